use super::*;

fn value(text: &str) -> toml::Value {
    let table: toml::Table = toml::from_str(&format!("x = {text}")).unwrap();
    table["x"].clone()
}

fn parse_text(text: &str) -> Result<Histogram, String> {
    parse(&value(text), 16 * 1024, None)
}

#[test]
fn the_three_forms_parse() {
    assert_eq!(
        parse_text("\"linux-census-exits\"").unwrap(),
        census::exits_histogram()
    );
    assert_eq!(
        parse_text("{ fixed = 9000 }").unwrap(),
        census::exact_histogram([(9000, 1)])
    );
    assert_eq!(
        parse_text("[[1024, 1], [4096, 3]]").unwrap().buckets,
        [
            Bucket {
                up_to_bytes: 1024,
                weight: 1
            },
            Bucket {
                up_to_bytes: 4096,
                weight: 3
            }
        ]
    );
    assert_eq!(parse_text("{ fixed = 16384 }").unwrap().max_bytes(), 16384);
}

#[test]
fn every_bad_form_names_its_problem() {
    for (text, expected) in [
        ("\"gaussian\"", "unknown distribution \"gaussian\""),
        ("\"gaussian\"", "linux-census-live-sleeping"),
        (
            "{ fixed = 16385 }",
            "16385 bytes is beyond max_stack (16384 bytes)",
        ),
        ("{ fixed = 0 }", "not a depth"),
        ("{ fixed = -5 }", "not a depth"),
        ("{ fixed = \"9K\" }", "not a depth"),
        ("{ fixed = 9000, jitter = 3 }", "may only hold `fixed`"),
        ("{ mean = 9000 }", "may only hold `fixed`"),
        ("[]", "an empty histogram"),
        ("[[1024]]", "not a pair"),
        ("[1024, 1]", "not a pair"),
        ("[[1024, -1]]", "not a whole number of 0 or more"),
        ("[[20000, 1]]", "20000 bytes is beyond max_stack"),
        ("[[-3, 1]]", "not a depth"),
        ("[[2048, 1], [1024, 1]]", "bounds must increase"),
        ("[[1024, 0]]", "every weight is 0"),
        ("12", "integer is not a distribution"),
    ] {
        let error = parse_text(text).expect_err(text);
        assert!(error.contains(expected), "{text}: {error}");
    }
}

#[test]
fn a_named_distribution_beyond_a_small_max_stack_is_refused() {
    // No named distribution exceeds 16 KiB; a smaller bound shows the check applies.
    let error = parse(&value("\"linux-census-exits\""), 4096, None).unwrap_err();
    assert!(error.contains("reaches 5824 bytes"), "{error}");
}
