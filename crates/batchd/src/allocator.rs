//! The process's allocator: jemalloc, with one arena, freed pages returned to the OS after
//! 100 ms, and a background thread that returns them, so that an idle server gives its memory
//! back too.
//!
//! The arena count and the decays are baked in when jemalloc is built: `.cargo/config.toml`
//! sets `JEMALLOC_SYS_WITH_MALLOC_CONF`, which tikv-jemalloc-sys's build script hands to
//! jemalloc. Cargo reads that file from the directory it runs in, so a build started outside
//! the repository gets jemalloc's defaults, and `serve` warns about it. `_RJEM_MALLOC_CONF` in
//! the environment overrides the settings at start. The background thread is started by
//! [`start`] rather than asked for in that string: jemalloc has none on macOS, where the option
//! would make it fail to initialise, and with it every allocation.
//!
//! glibc's allocator showed up at a tenth of the dispatch profile (many small, short-lived
//! buffers per upstream request, freed on another thread). mimalloc (v3, without transparent
//! huge pages) fixed that, but kept about twice the live heap resident: heaptrack put the
//! dispatch's live heap at 18.7 MB, mimalloc's arena held 39 MB. Measured with `batchd-bench
//! --rows dispatch,dispatch-rss --requests 50000`, release builds alternated on the same data
//! (peak RSS while dispatching 10,000 requests at 256; CPU per request at 0 ms upstream):
//! - mimalloc: 50.3-62.1 MB, 18-26 µs (eleven runs);
//! - jemalloc as built by default (eight arenas on two cores, 10 s decay): 55.0-60.0 MB, 18-25
//!   µs; arenas per CPU instead: 50.2-55.6 MB. With eight, most threads have an arena of their
//!   own, and pages freed in one are not reused by the others;
//! - one arena, 1 s decay: 44.2-49.8 MB, 18-25 µs (eleven runs);
//! - one arena, 100 ms: 43.1-46.2 MB, 18-24 µs (five runs), and 4,197 `madvise` calls
//!   machine-wide (`perf stat -a`) over the two dispatch rows' 100,000 requests;
//! - one arena, no decay: 38.7-40.3 MB, 21-27 µs, and 40,892 `madvise` calls (each purged page
//!   faults back in when it is used again).
//!
//! The other rows of the bench stayed within their noise with one arena at 100 ms (two
//! alternations of all but `api` and `postgres`, five more of `ingest`), and the creates' own
//! peaks fell: a 259 MB create's RSS growth 20-26 MB to 18-19, a 200 MB OpenAI upload's 28-39
//! to 21-24.
//!
//! One arena means every thread's cache refills take one arena's locks: free on two cores, as
//! measured; on a machine with many, `_RJEM_MALLOC_CONF=narenas:N` gives each group of threads
//! its own at the cost of the memory above.
//!
//! Not on MSVC, where jemalloc does not build: the system allocator serves there.

/// Where an operator's jemalloc settings come from, overriding the built-in ones.
#[cfg(not(target_env = "msvc"))]
const OVERRIDE: &str = "_RJEM_MALLOC_CONF";

/// The arenas `.cargo/config.toml` asks for: a binary with another count was built without it.
#[cfg(not(target_env = "msvc"))]
const BUILT_ARENAS: std::ffi::c_uint = 1;

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Starts jemalloc's background thread (unless the operator's settings mention it), and warns
/// when the binary was built without the settings above. For `serve`, after logging is set up.
pub(crate) fn start() {
    #[cfg(not(target_env = "msvc"))]
    {
        let overridden = std::env::var(OVERRIDE).ok();
        if overridden.is_none()
            && tikv_jemalloc_ctl::opt::narenas::read().is_ok_and(|n| n != BUILT_ARENAS)
        {
            tracing::warn!(
                "batchd was built without its allocator settings (.cargo/config.toml is read \
                 only by a build run inside the repository); jemalloc's defaults hold more memory"
            );
        }
        if !overridden.is_some_and(|c| c.contains("background_thread"))
            && let Err(err) = tikv_jemalloc_ctl::background_thread::write(true)
        {
            tracing::debug!(
                error = %err,
                "no allocator background thread here; freed pages are returned as memory is allocated"
            );
        }
    }
}

#[cfg(all(test, not(target_env = "msvc")))]
mod tests {
    /// `.cargo/config.toml`'s settings reach the binary (without them jemalloc runs with its
    /// defaults, measured above at 55-60 MB), and the background thread starts.
    #[test]
    fn the_built_settings_hold_and_the_background_thread_starts() {
        assert_eq!(
            tikv_jemalloc_ctl::opt::narenas::read().unwrap(),
            super::BUILT_ARENAS
        );
        super::start();
        #[cfg(target_os = "linux")]
        assert!(tikv_jemalloc_ctl::background_thread::read().unwrap());
    }
}
