use super::*;

fn total(histogram: &Histogram) -> u64 {
    histogram.buckets.iter().map(|b| b.weight).sum()
}

#[test]
fn the_shipped_files_keep_their_provenance_headers() {
    assert!(EXITS_TSV.starts_with("# Kernel stack high-water marks of real Linux threads"));
    assert!(LIVE_TSV.starts_with("# Live kernel stacks of every visible thread"));
}

#[test]
fn the_exit_histogram_holds_every_thread_in_its_64_byte_range() {
    let exits = exits_histogram();
    assert_eq!(total(&exits), 167_487);
    exits.check("exits", 16 * 1024).unwrap();
    assert_eq!(
        exits.buckets[..2],
        [
            Bucket {
                up_to_bytes: 768,
                weight: 0
            },
            Bucket {
                up_to_bytes: 832,
                weight: 471
            }
        ]
    );
    assert_eq!(exits.max_bytes(), 5824);
    // Every weighted bucket spans exactly the 64 bytes of its rounding.
    for pair in exits.buckets.windows(2) {
        if pair[1].weight > 0 {
            assert_eq!(pair[1].up_to_bytes - pair[0].up_to_bytes, 64, "{pair:?}");
        }
    }
    // 567 of the exits went beyond one page.
    let beyond_a_page: u64 = exits
        .buckets
        .iter()
        .filter(|b| b.up_to_bytes > 4096)
        .map(|b| b.weight)
        .sum();
    assert_eq!(beyond_a_page, 567);
}

#[test]
fn the_live_snapshot_has_85_threads_and_exact_values() {
    let threads = live_threads();
    assert_eq!(threads.len(), 85);
    assert_eq!(
        threads[0],
        LiveThread {
            used_bytes: 2296,
            sleeping_depth_bytes: 552
        }
    );
    for name in ["linux-census-live-used", "linux-census-live-sleeping"] {
        let histogram = named(name).unwrap();
        histogram.check(name, 16 * 1024).unwrap();
        assert_eq!(total(&histogram), 85, "{name}");
        // Every weighted bucket is one byte wide: it produces exactly its value.
        for pair in histogram.buckets.windows(2) {
            if pair[1].weight > 0 {
                assert_eq!(pair[1].up_to_bytes - pair[0].up_to_bytes, 1, "{pair:?}");
            }
        }
    }
    assert_eq!(named("linux-census-live-used").unwrap().max_bytes(), 4776);
    assert_eq!(
        named("linux-census-live-sleeping").unwrap().max_bytes(),
        2816
    );
    assert_eq!(named("no-such-distribution"), None);
}

#[test]
fn the_live_population_counts_identical_threads_once() {
    let population = live_population("linux-census-live").unwrap();
    assert_eq!(population.iter().map(|(_, n)| n).sum::<u32>(), 85);
    assert_eq!(population.len(), 66);
    let beyond_a_page: u32 = population
        .iter()
        .filter(|(t, _)| t.used_bytes > 4096)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(beyond_a_page, 10);
    assert_eq!(live_population("other"), None);
}

#[test]
fn an_exact_histogram_produces_exactly_its_values() {
    assert_eq!(
        exact_histogram([(9000, 1)]).buckets,
        [
            Bucket {
                up_to_bytes: 8999,
                weight: 0
            },
            Bucket {
                up_to_bytes: 9000,
                weight: 1
            }
        ]
    );
    assert_eq!(
        exact_histogram([(2, 3), (1, 1), (2, 1)]).buckets,
        [
            Bucket {
                up_to_bytes: 1,
                weight: 1
            },
            Bucket {
                up_to_bytes: 2,
                weight: 4
            }
        ]
    );
}
