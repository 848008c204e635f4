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
/// keep more partly used pages.
#[cfg(feature = "jemalloc")]
#[unsafe(export_name = "malloc_conf")]
pub(crate) static MALLOC_CONF: MallocConf =
    MallocConf(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:1".as_ptr());

/// A `const char *` as jemalloc reads it.
#[cfg(feature = "jemalloc")]
#[repr(transparent)]
pub(crate) struct MallocConf(*const std::ffi::c_char);
// SAFETY: it points to a static, immutable, NUL-terminated string.
#[cfg(feature = "jemalloc")]
unsafe impl Sync for MallocConf {}

/// Called by tokio each time a worker thread goes idle: hands the thread's cache of
/// freed blocks back to the arena when the thread has freed at least
/// `FLUSH_AFTER_FREED` bytes since its last flush, or anything at all and a second
/// has passed. A thread that freed the memory of thousands of sessions and then went
/// quiet would otherwise keep it (its cache is only trimmed as it allocates again),
/// and the background thread can only return pages nobody holds. An idle worker may
/// stay parked for good, so the flush must happen on its last park before that, not
/// on a later one: a time limit alone left up to a second's frees cached (RSS 5 s
/// after a spike up to 1.31x; benches/RESULTS.md). The byte count bounds what an idle
/// thread keeps, and the rate of flushes under load (one per that many bytes freed).
pub(crate) fn on_thread_park() {
    #[cfg(feature = "jemalloc")]
    {
        use std::cell::Cell;
        use std::time::{Duration, Instant};
        /// Bytes freed since the last flush that make a park flush at once.
        const FLUSH_AFTER_FREED: u64 = 1024 * 1024;
        thread_local! {
            /// When the thread last flushed, and its freed-bytes count then.
            static LAST: Cell<Option<(Instant, u64)>> = const { Cell::new(None) };
        }
        let now = Instant::now();
        let freed = freed_by_this_thread();
        let due = LAST.with(|l| {
            let due = match l.get() {
                None => true,
                Some((t, was)) => match freed {
                    Some(f) => {
                        f.wrapping_sub(was) >= FLUSH_AFTER_FREED
                            || (f != was && now.duration_since(t) >= Duration::from_secs(1))
                    }
                    None => now.duration_since(t) >= Duration::from_secs(1),
                },
            };
            if due {
                l.set(Some((now, freed.unwrap_or(0))));
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

/// The bytes this thread has freed since it started, read through jemalloc's
/// per-thread counter (`thread.deallocatedp`, asked once per thread); `None` if
/// jemalloc does not keep it.
#[cfg(feature = "jemalloc")]
fn freed_by_this_thread() -> Option<u64> {
    use std::cell::Cell;
    use tikv_jemalloc_ctl::thread::{ThreadLocal, deallocatedp};
    thread_local! {
        /// `None` until asked; then the counter, or `None` if jemalloc has none.
        static COUNTER: Cell<Option<Option<ThreadLocal<u64>>>> = const { Cell::new(None) };
    }
    COUNTER.with(|c| {
        let counter = c.get().unwrap_or_else(|| {
            let k = deallocatedp::read().ok();
            c.set(Some(k));
            k
        });
        counter.map(ThreadLocal::get)
    })
}
