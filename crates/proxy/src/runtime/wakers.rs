//! Pieces shared by the worker-local wait registries (`shutdown.rs`, `hold.rs`) and the
//! single-waiter channels (the upstream outbox, `upstream::reply_channel`).

use std::task::Waker;

/// Keep `waker` in `place`, cloning it only when the one there would wake another task (a
/// wake-up after every reply must not cost a clone each time it is polled again).
#[inline]
pub(crate) fn keep_waker(place: &mut Option<Waker>, waker: &Waker) {
    if !place.as_ref().is_some_and(|w| w.will_wake(waker)) {
        *place = Some(waker.clone());
    }
}

/// Entries addressed by a stable index; released indices are reused. A released entry keeps
/// its value: the owner clears what must not outlive it.
pub(crate) struct Slab<T> {
    entries: Vec<T>,
    free: Vec<usize>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T: Default> Slab<T> {
    /// An index for a new owner: a released one, or a new default entry.
    pub fn acquire(&mut self) -> usize {
        self.free.pop().unwrap_or_else(|| {
            self.entries.push(T::default());
            self.entries.len() - 1
        })
    }
}

impl<T> Slab<T> {
    /// Give `index` back for reuse.
    pub fn release(&mut self, index: usize) {
        self.free.push(index);
    }

    /// The entry at `index`.
    ///
    /// # Panics
    /// When `index` was never acquired.
    pub fn get_mut(&mut self, index: usize) -> &mut T {
        &mut self.entries[index]
    }

    /// Every entry, released ones included.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, T> {
        self.entries.iter_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_indices_are_reused_and_keep_their_value() {
        let mut s: Slab<u32> = Slab::default();
        let (a, b) = (s.acquire(), s.acquire());
        assert_eq!((a, b), (0, 1));
        *s.get_mut(a) = 7;
        s.release(a);
        assert_eq!(s.acquire(), a);
        assert_eq!(*s.get_mut(a), 7);
        assert_eq!(s.acquire(), 2);
    }

    #[test]
    fn a_waker_is_replaced_only_by_one_for_another_task() {
        struct Task;
        impl std::task::Wake for Task {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        let a = Waker::from(std::sync::Arc::new(Task));
        let b = Waker::from(std::sync::Arc::new(Task));
        let mut slot = None;
        keep_waker(&mut slot, &a);
        assert!(slot.as_ref().is_some_and(|w| w.will_wake(&a)));
        keep_waker(&mut slot, &a.clone());
        assert!(slot.as_ref().is_some_and(|w| w.will_wake(&a)));
        keep_waker(&mut slot, &b);
        assert!(slot
            .as_ref()
            .is_some_and(|w| w.will_wake(&b) && !w.will_wake(&a)));
    }
}
