//! Panics that still happen in production: counted in `slotgate_panics_total`, logged once,
//! and, when one happens while a command is being routed, answered with an error to that
//! client instead of dropping its connection with every reply in flight.
//!
//! No input should panic (every argument position computed from the arguments is checked);
//! this is the net under that rule. The process-wide hook ([`install_hook`]) counts every
//! panic of any thread. Outside [`guard`] it logs the panic at once; inside, it keeps the
//! message for the guard, which logs it with the command's name (never argument values).

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{LazyLock, Once};

use prometheus::IntCounter;

/// `slotgate_panics_total`: every panic of the process since it started.
pub(crate) static PANICS: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "slotgate_panics_total",
        "Panics caught in the process (each is a bug: the log names the command).",
    )
    .expect("valid metric")
});

thread_local! {
    /// Whether this thread is inside [`guard`] (the guard logs the panic itself).
    static GUARDED: Cell<bool> = const { Cell::new(false) };
    /// The message and place of the panic caught by the current guard.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Install the process-wide panic hook (once; later calls do nothing). Without a tracing
/// subscriber (unit tests), an unguarded panic also goes to the hook that was there before,
/// so a failing test still prints its message.
pub fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        LazyLock::force(&PANICS);
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            PANICS.inc();
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            let place = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let text = format!("{message} at {place}");
            if GUARDED.with(Cell::get) {
                CAUGHT.with(|c| *c.borrow_mut() = Some(text));
            } else if tracing::dispatcher::has_been_set() {
                let thread = std::thread::current();
                let thread = thread.name().unwrap_or("?");
                tracing::error!(panic = %text, thread, "panic (a bug): the task it happened in was stopped");
            } else {
                previous(info);
            }
        }));
    });
}

/// A panic caught by [`guard`]: its message and place, to log with the command's name.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Caught(String);

impl Caught {
    /// Log the panic once, naming the command (never its arguments).
    pub fn log(&self, command: &str) {
        tracing::error!(
            command,
            panic = %self.0,
            "panic (a bug) while handling a command: the client gets an error and its connection is closed"
        );
    }
}

/// Run `f`, catching a panic in it as [`Caught`] (counted by the hook, not yet logged).
#[inline]
pub(crate) fn guard<T>(f: impl FnOnce() -> T) -> Result<T, Caught> {
    GUARDED.with(|g| g.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(false));
    result.map_err(|_| {
        Caught(
            CAUGHT
                .with(|c| c.borrow_mut().take())
                .unwrap_or_else(|| "(no message)".into()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guarded_panic_is_counted_and_becomes_err() {
        install_hook();
        let before = PANICS.get();
        assert_eq!(guard(|| 7), Ok(7));
        assert_eq!(PANICS.get(), before);
        let v: Vec<u8> = Vec::new();
        let caught = guard(|| v[std::hint::black_box(3)]).unwrap_err();
        assert!(caught.0.contains("index out of bounds"), "{caught:?}");
        assert!(caught.0.contains("panics.rs"), "{caught:?}");
        assert!(PANICS.get() > before);
        // The guard is left: the next guarded call starts clean.
        assert!(!GUARDED.with(Cell::get));
        assert!(CAUGHT.with(|c| c.borrow().is_none()));
    }
}
