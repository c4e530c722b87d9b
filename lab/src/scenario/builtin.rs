//! The built-in scenarios: the files of the repository's `scenarios/`, embedded at build time,
//! so `dks compare --scenario android` works from any folder. Each is checked like any other
//! file when it is used (and by a unit test, so a broken built-in never ships).

/// The default scenario of `dks compare`.
pub const DEFAULT: &str = "linux-census";

/// Every built-in: its name and its TOML.
const BUILTINS: [(&str, &str); 6] = [
    (
        "linux-census",
        include_str!("../../../scenarios/linux-census.toml"),
    ),
    ("android", include_str!("../../../scenarios/android.toml")),
    ("storage", include_str!("../../../scenarios/storage.toml")),
    (
        "adversarial",
        include_str!("../../../scenarios/adversarial.toml"),
    ),
    (
        "adversarial-irqoff",
        include_str!("../../../scenarios/adversarial-irqoff.toml"),
    ),
    ("million", include_str!("../../../scenarios/million.toml")),
];

/// The names of the built-ins, in the order the help lists them.
pub const NAMES: [&str; 6] = [
    BUILTINS[0].0,
    BUILTINS[1].0,
    BUILTINS[2].0,
    BUILTINS[3].0,
    BUILTINS[4].0,
    BUILTINS[5].0,
];

/// Returns the TOML of the built-in called `name`.
pub fn text(name: &str) -> Option<&'static str> {
    BUILTINS
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .map(|(_, text)| *text)
}
