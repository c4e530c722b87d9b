use super::*;

#[test]
fn sizes_parse_in_k_m_and_g() {
    for (given, mib) in [
        ("512M", 512),
        ("512m", 512),
        ("1G", 1024),
        ("16g", 16384),
        ("32M", 32),
        ("65536K", 64),
    ] {
        assert_eq!(given.parse::<MemorySize>().unwrap().mib(), mib, "{given}");
    }
}

#[test]
fn bad_sizes_are_rejected_with_the_accepted_form() {
    for given in [
        "",
        "15Q",
        "512",
        "M",
        "-1G",
        "1.5G",
        "1 G",
        "31M",
        "17G",
        "100K",
        "512MB",
        "99999999999999999999G",
    ] {
        let error = given.parse::<MemorySize>().unwrap_err().to_string();
        assert!(error.contains(MemorySize::ACCEPTED), "{given}: {error}");
        assert!(error.contains(&format!("{given:?}")), "{given}: {error}");
    }
}

#[test]
fn sizes_display_as_qemu_takes_them() {
    assert_eq!(MemorySize::DEFAULT.to_string(), "512M");
    assert_eq!("2G".parse::<MemorySize>().unwrap().to_string(), "2G");
    assert_eq!("1536M".parse::<MemorySize>().unwrap().to_string(), "1536M");
}

#[test]
fn validate_names_the_bad_field() {
    let kernel = std::env::current_exe().unwrap();
    let good = BootConfig::new(&kernel);
    good.validate().unwrap();

    let mut bad = good.clone();
    bad.cpus = 9;
    assert!(bad.validate().unwrap_err().to_string().contains("cpus"));

    let mut bad = good.clone();
    bad.timeout = Duration::ZERO;
    assert!(bad.validate().unwrap_err().to_string().contains("timeout"));

    let mut bad = good.clone();
    bad.icount_shift = Some(11);
    assert!(bad.validate().unwrap_err().to_string().contains("icount"));

    let mut bad = good.clone();
    bad.kernel_args = vec!["a b".into()];
    assert!(bad.validate().unwrap_err().to_string().contains("\"a b\""));

    let mut bad = good.clone();
    bad.kernel_args = vec!["test=all".into(), "x".repeat(800)];
    let error = bad.validate().unwrap_err().to_string();
    assert!(
        error.contains("809 bytes long") && error.contains("at most 768"),
        "{error}"
    );

    let mut bad = good.clone();
    bad.kernel_args = vec!["test=all".into(), "x=\"y\"".into()];
    let error = bad.validate().unwrap_err().to_string();
    assert!(error.contains("kernel argument \"x=\\\"y\\\"\""), "{error}");

    let mut bad = good.clone();
    bad.kernel_args = vec![String::new()];
    assert!(bad.validate().unwrap_err().to_string().contains("empty"));

    let mut bad = good.clone();
    bad.kernel = "/no/such/kernel".into();
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("/no/such/kernel")
    );

    let mut bad = good;
    bad.initrd = Some("/no/such/initrd".into());
    assert!(bad.validate().unwrap_err().to_string().contains("initrd"));
}
