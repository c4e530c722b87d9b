use super::*;

fn args_of(config: &BootConfig) -> Vec<String> {
    args(config, None)
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect()
}

fn value_of<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).map(String::as_str)
}

#[test]
fn default_boot_has_every_fixed_option() {
    let config = BootConfig::new("/k.elf");
    let args = args_of(&config);
    assert_eq!(value_of(&args, "-kernel"), Some("/k.elf"));
    assert_eq!(value_of(&args, "-append"), Some(""));
    assert_eq!(value_of(&args, "-serial"), Some("stdio"));
    assert_eq!(value_of(&args, "-display"), Some("none"));
    assert_eq!(value_of(&args, "-monitor"), Some("none"));
    assert!(args.iter().any(|a| a == "-no-reboot"));
    assert_eq!(
        value_of(&args, "-device"),
        Some("isa-debug-exit,iobase=0xf4,iosize=0x04")
    );
    assert_eq!(value_of(&args, "-m"), Some("512M"));
    assert_eq!(value_of(&args, "-smp"), Some("1"));
    assert_eq!(value_of(&args, "-accel"), Some("tcg"));
    assert_eq!(value_of(&args, "-icount"), None);
    assert_eq!(value_of(&args, "-initrd"), None);
}

#[test]
fn options_reach_the_command_line() {
    let mut config = BootConfig::new("/k.elf");
    config.kernel_args = vec!["test=all".into(), "max_stack=16K".into()];
    config.cpus = 2;
    config.memory = "1G".parse().unwrap();
    config.initrd = Some("/scenario.bin".into());
    let args = args_of(&config);
    assert_eq!(value_of(&args, "-append"), Some("test=all max_stack=16K"));
    assert_eq!(value_of(&args, "-smp"), Some("2"));
    assert_eq!(value_of(&args, "-m"), Some("1G"));
    assert_eq!(value_of(&args, "-accel"), Some("tcg,thread=multi"));
    assert_eq!(value_of(&args, "-initrd"), Some("/scenario.bin"));

    config.icount_shift = Some(0);
    let args = args_of(&config);
    assert_eq!(value_of(&args, "-icount"), Some("shift=0"));
    assert_eq!(
        value_of(&args, "-accel"),
        Some("tcg"),
        "icount needs one TCG thread"
    );

    config.accel = Accel::Kvm;
    assert_eq!(value_of(&args_of(&config), "-accel"), Some("kvm"));
}

#[test]
fn the_monitor_is_off_unless_a_private_socket_is_given() {
    let config = BootConfig::new("/k.elf");
    let socket = MonitorSocket::new().unwrap();
    let args: Vec<String> = args(&config, Some(&socket))
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect();
    assert_eq!(value_of(&args, "-monitor"), Some("none"));
    assert_eq!(
        value_of(&args, "-chardev"),
        Some(format!("socket,id=dks-qmp,path={}", socket.path().display()).as_str())
    );
    assert_eq!(
        value_of(&args, "-mon"),
        Some("chardev=dks-qmp,mode=control")
    );
    assert_eq!(value_of(&args_of(&config), "-chardev"), None);
}

#[test]
fn missing_qemu_names_the_package() {
    let message = missing_message();
    assert!(message.contains(QEMU_BINARY));
    assert!(message.contains("apt-get install qemu-system-x86"));
}

#[test]
fn kvm_is_refused_with_a_reason_where_it_cannot_work() {
    assert!(check_accel(Accel::Tcg).is_ok());
    match kvm_usable() {
        Ok(()) => assert!(check_accel(Accel::Kvm).is_ok()),
        Err(why) => {
            let error = check_accel(Accel::Kvm).unwrap_err().to_string();
            assert!(
                error.contains(&why) && error.contains("--accel tcg"),
                "{error}"
            );
        }
    }
}
