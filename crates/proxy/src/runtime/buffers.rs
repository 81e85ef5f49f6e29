//! The worker's pool of session I/O buffers. A client connection holds a read buffer only
//! while bytes are buffered, a read is under way or replies are owed, and an output buffer
//! only while replies wait to be written: an idle connection holds neither, so thousands of
//! idle clients cost their sockets and TLS state, not 32 KiB of buffers each. A session
//! takes a buffer from the pool when it reads or has replies to write and gives it back when
//! it is idle again; the pool keeps a bounded number of standard-size ones, so a busy worker
//! reuses them without allocating, and frees the others, so a buffer that grew for a large
//! request or reply is released as soon as its session is idle.

use std::cell::RefCell;

use bytes::BytesMut;

/// Capacity of a buffer fresh from the pool.
pub(crate) const BUFFER_SIZE: usize = 16 * 1024;

/// Buffers larger than this grew for a large request or reply: freed when given back.
pub(crate) const POOLED_MAX: usize = 2 * BUFFER_SIZE;

/// Buffers kept per worker: enough for every client of a busy worker to give back both of
/// its buffers between commands (50 clients in `benches/e2e`) without the next command
/// allocating; at most 4 MiB.
const POOL_LEN: usize = 128;

/// One worker's free buffers (thread-local: the worker's sessions share one thread).
#[derive(Default)]
pub(crate) struct BufferPool {
    free: RefCell<Vec<BytesMut>>,
}

// === impl BufferPool ===

impl BufferPool {
    /// An empty buffer with room for at least [`BUFFER_SIZE`] / 4 bytes: a pooled one, or a
    /// new one of [`BUFFER_SIZE`].
    #[inline]
    pub fn take(&self) -> BytesMut {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(BUFFER_SIZE))
    }

    /// Take back a buffer (its contents are discarded). Kept when its allocation is of the
    /// standard size and the pool has room; otherwise freed (once nothing else points into
    /// it).
    #[inline]
    pub fn give(&self, mut buf: BytesMut) {
        buf.clear();
        // Rewind to the start of the allocation (room consumed by writes, or by requests
        // split off a read buffer), so the capacity is all of it. It stays the rest only
        // while requests split off still point into the allocation: then it is at most the
        // allocation a request needed, and is rewound (and freed if it grew) the next time
        // it is given back.
        let _ = buf.try_reclaim(buf.capacity() + 1);
        if !(BUFFER_SIZE / 4..=POOLED_MAX).contains(&buf.capacity()) {
            return;
        }
        let mut free = self.free.borrow_mut();
        if free.len() < POOL_LEN {
            free.push(buf);
        }
    }

    /// Buffers kept now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.free.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_buffers_are_reused_and_grown_ones_freed() {
        let pool = BufferPool::default();
        let buf = pool.take();
        assert!(buf.capacity() >= BUFFER_SIZE);
        let ptr = buf.as_ptr();
        pool.give(buf);
        assert_eq!(pool.len(), 1);
        let again = pool.take();
        assert_eq!(again.as_ptr(), ptr, "the same allocation, reused");
        assert_eq!(pool.len(), 0);

        let mut grown = again;
        grown.extend_from_slice(&vec![b'x'; 100_000]);
        assert!(grown.capacity() > POOLED_MAX);
        grown.clear();
        pool.give(grown);
        assert_eq!(pool.len(), 0, "a grown buffer is freed, not kept");

        pool.give(BytesMut::new());
        assert_eq!(pool.len(), 0, "nothing to keep in an unallocated buffer");
    }

    #[test]
    fn a_grown_buffer_is_freed_even_after_its_front_was_consumed() {
        let pool = BufferPool::default();
        // A read buffer that grew for a 100 kB request, which was then split off: only the
        // rest of the allocation is left in the buffer.
        let mut buf = pool.take();
        buf.reserve(120_000);
        buf.extend_from_slice(&vec![b'x'; 100_000]);
        let request = buf.split_to(100_000).freeze();
        assert!(
            (BUFFER_SIZE / 4..=POOLED_MAX).contains(&buf.capacity()),
            "the rest alone looks standard"
        );
        drop(request);
        pool.give(buf);
        assert_eq!(pool.len(), 0, "the whole allocation is seen, and freed");

        // An output buffer that grew for a 100 kB reply, all written (consumed from the
        // front).
        let mut buf = pool.take();
        buf.reserve(120_000);
        buf.extend_from_slice(&vec![b'y'; 100_000]);
        bytes::Buf::advance(&mut buf, 100_000);
        assert!((BUFFER_SIZE / 4..=POOLED_MAX).contains(&buf.capacity()));
        pool.give(buf);
        assert_eq!(pool.len(), 0);

        // A standard one consumed from the front is rewound and kept whole.
        let mut buf = pool.take();
        buf.extend_from_slice(&[b'z'; 15_000]);
        let request = buf.split_to(15_000).freeze();
        drop(request);
        pool.give(buf);
        assert_eq!(pool.take().capacity(), BUFFER_SIZE);
    }

    #[test]
    fn the_pool_is_bounded() {
        let pool = BufferPool::default();
        let taken: Vec<BytesMut> = (0..POOL_LEN + 10).map(|_| pool.take()).collect();
        for buf in taken {
            pool.give(buf);
        }
        assert_eq!(pool.len(), POOL_LEN);
    }
}
