//! Atomic replacement: a reader loading the cache while the builder
//! rebuilds it sees only whole files, old or new.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use cache_builder::BuildOptions;

use super::*;

#[test]
fn reader_sees_only_whole_old_or_new_files() {
    const OLD: u64 = 1_700_000_000;
    const NEW: u64 = 1_700_000_600;
    let f = Fixture::new(BASE);
    std::fs::create_dir_all(f.path("out")).unwrap();
    let opts = |now| BuildOptions {
        config: f.config(),
        output: f.output(),
        reload_pidfile: None,
        now,
        progress: false,
    };
    cache_builder::build(&opts(OLD)).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = Arc::clone(&done);
        let path = f.output();
        thread::spawn(move || {
            let mut loads = 0u64;
            // Keep reading until the writer is done, then once more, so at
            // least one load sees the final file.
            loop {
                let finished = done.load(Ordering::Acquire);
                let cache = cachefile::load(&path).expect("every load succeeds");
                assert!(
                    cache.built_at == OLD || cache.built_at == NEW,
                    "unexpected build time {}",
                    cache.built_at
                );
                loads += 1;
                if finished {
                    return (loads, cache.built_at);
                }
            }
        })
    };
    for i in 0..40 {
        let now = if i % 2 == 0 { NEW } else { OLD };
        cache_builder::build(&opts(now)).unwrap();
    }
    cache_builder::build(&opts(NEW)).unwrap();
    done.store(true, Ordering::Release);
    let (loads, last) = reader.join().unwrap();
    assert!(loads > 0);
    assert_eq!(last, NEW);
}
