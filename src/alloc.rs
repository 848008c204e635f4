//! The process's allocator: jemalloc, for every allocation of the process (aws-lc's
//! C code included: with `unprefixed_malloc_on_supported_platforms` it is the
//! `malloc`), because glibc's arenas keep the peak of a reconnect storm resident for
//! good (benches/RESULTS.md: 4.4x the RSS before 2,000 sessions, 5 s after they
//! closed).
//!
//! Owns: the global allocator, jemalloc's options, and the flush of an idle worker
//! thread's cache. Does not own: the relay's buffer pool (relay/pool.rs).
//! Without the `jemalloc` feature (`--no-default-features`) this is the system
//! allocator and `on_thread_park` does nothing.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (the `MALLOC_CONF` environment variable can add to them): a
/// background thread returns freed pages to the kernel about a second after they
/// were last used, instead of on the next allocation; one arena, since two worker
/// threads rarely contend with their thread caches in front of it, and more arenas
/// keep more partly used pages; thread caches hold blocks of at most 8 KiB, so the
/// 16 KiB and larger buffers of closed sessions (TLS records, relay buffers past the
/// pool's spares) go back to the arena, where the background thread can return them,
/// instead of waiting in the cache of a thread that went idle (benches/RESULTS.md:
/// RSS 5 s after a spike 1.06-1.22x in 8 runs, against up to 1.31x with the default
/// 32 KiB; instructions per message +0.3 %, per handshake unchanged).
#[cfg(feature = "jemalloc")]
#[unsafe(export_name = "malloc_conf")]
pub static MALLOC_CONF: MallocConf = MallocConf(
    c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:1,tcache_max:8192"
        .as_ptr(),
);

/// A `const char *` as jemalloc reads it.
#[cfg(feature = "jemalloc")]
#[repr(transparent)]
pub struct MallocConf(*const std::ffi::c_char);
// SAFETY: it points to a static, immutable, NUL-terminated string.
#[cfg(feature = "jemalloc")]
unsafe impl Sync for MallocConf {}

/// Called by tokio each time a worker thread goes idle. At most once a second per
/// thread, hands the thread's cache of freed blocks back to the arena: a thread that
/// freed the memory of thousands of sessions and then went quiet would otherwise keep
/// it (its cache is only trimmed as it allocates again), and the background thread
/// can only return pages nobody holds. wsgate's once-a-second housekeeping wakes
/// every worker, so an idle process is flushed within about two seconds.
pub fn on_thread_park() {
    #[cfg(feature = "jemalloc")]
    {
        use std::cell::Cell;
        use std::time::{Duration, Instant};
        thread_local! {
            static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
        }
        let now = Instant::now();
        let due = LAST.with(|l| {
            let due = l
                .get()
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
            if due {
                l.set(Some(now));
            }
            due
        });
        if due {
            // SAFETY: "thread.tcache.flush" takes and returns nothing; the name is a
            // NUL-terminated string. Its result (an error only when the thread has no
            // cache) is of no use here.
            unsafe {
                tikv_jemalloc_sys::mallctl(
                    c"thread.tcache.flush".as_ptr(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    0,
                );
            }
        }
    }
}
