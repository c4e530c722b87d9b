use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::*;

/// Plays QEMU's side of `script`: for each (expected command, answer lines), reads one
/// command, checks its name and sends the lines.
fn fake_qemu(
    path: PathBuf,
    script: Vec<(&'static str, Vec<String>)>,
) -> std::thread::JoinHandle<Vec<Value>> {
    std::thread::spawn(move || {
        let stream = UnixStream::connect(path).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        writeln!(
            writer,
            r#"{{"QMP": {{"version": {{}}, "capabilities": ["oob"]}}}}"#
        )
        .unwrap();
        let mut seen = Vec::new();
        for (expected, answers) in script {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let command: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(command["execute"], expected, "{line}");
            seen.push(command);
            for answer in answers {
                writeln!(writer, "{answer}").unwrap();
            }
        }
        seen
    })
}

#[test]
fn the_socket_s_folder_is_private_and_goes_away() {
    let socket = MonitorSocket::new().unwrap();
    let dir = socket.dir().to_owned();
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    assert_eq!(meta.uid(), nix::unistd::getuid().as_raw());
    assert!(
        std::fs::metadata(socket.path())
            .unwrap()
            .file_type()
            .is_socket()
    );
    assert_eq!(socket.path().parent(), Some(dir.as_path()));
    assert!(dir.starts_with(std::env::temp_dir()));
    let args: Vec<String> = socket
        .qemu_args()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert_eq!(args[0], "-chardev");
    assert_eq!(
        args[1],
        format!("socket,id=dks-qmp,path={}", socket.path().display())
    );
    assert!(
        !args[1].contains("server"),
        "QEMU is the client: {}",
        args[1]
    );
    assert_eq!(args[2..], ["-mon", "chardev=dks-qmp,mode=control"]);
    drop(socket);
    assert!(!dir.exists());
}

#[test]
fn commands_get_their_answers_and_events_are_kept() {
    let socket = MonitorSocket::new().unwrap();
    let qemu = fake_qemu(
        socket.path().to_owned(),
        vec![
            ("qmp_capabilities", vec![r#"{"return": {}}"#.into()]),
            (
                "inject-nmi",
                vec![
                    r#"{"event": "NMI_SEEN", "data": {}}"#.into(),
                    r#"{"return": {}}"#.into(),
                ],
            ),
            (
                "human-monitor-command",
                vec![r#"{"return": "Invalid MCE bank number\r\n"}"#.into()],
            ),
            (
                "inject-nmi",
                vec![r#"{"error": {"class": "GenericError", "desc": "no"}}"#.into()],
            ),
        ],
    );
    let mut qmp = socket
        .accept(Instant::now() + Duration::from_secs(20), || false)
        .unwrap();
    assert_eq!(qmp.execute("inject-nmi", None).unwrap(), json!({}));
    assert_eq!(qmp.events().len(), 1);
    assert_eq!(
        qmp.human_monitor_command("mce 0 12 0x9000000000000000 0 0 0")
            .unwrap(),
        "Invalid MCE bank number\r\n"
    );
    let refused = qmp.execute("inject-nmi", None).unwrap_err().to_string();
    assert_eq!(
        refused,
        "QEMU's monitor refused inject-nmi: GenericError: no"
    );
    let seen = qemu.join().unwrap();
    assert_eq!(
        seen[2]["arguments"]["command-line"],
        "mce 0 12 0x9000000000000000 0 0 0"
    );
    drop(qmp);
}

#[test]
fn a_missing_or_silent_qemu_is_an_error_not_a_hang() {
    let socket = MonitorSocket::new().unwrap();
    let start = Instant::now();
    let error = socket
        .accept(Instant::now() + Duration::from_millis(200), || false)
        .unwrap_err();
    assert!(matches!(error, QmpError::NoConnection), "{error}");
    assert!(start.elapsed() < Duration::from_secs(10));
    let error = socket
        .accept(Instant::now() + Duration::from_secs(60), || true)
        .unwrap_err();
    assert!(matches!(error, QmpError::GaveUp), "{error}");

    // A QEMU that connects and closes without greeting.
    let path = socket.path().to_owned();
    let closer = std::thread::spawn(move || drop(UnixStream::connect(path).unwrap()));
    let error = socket
        .accept(Instant::now() + Duration::from_secs(20), || false)
        .unwrap_err();
    closer.join().unwrap();
    assert!(matches!(error, QmpError::Closed), "{error}");
}
