//! The built-in scenarios: the files of the repository's `scenarios/`, embedded at build time,
//! so `dks compare --scenario android` works from any folder. Each is checked like any other
//! file when it is used (and by a unit test, so a broken built-in never ships).

/// The default scenario of `dks compare`.
pub const DEFAULT: &str = "linux-census";

/// Every built-in: its name and its TOML.
const BUILTINS: [(&str, &str); 7] = [
    (
        "linux-census",
        include_str!("../../../scenarios/linux-census.toml"),
    ),
    (
        "linux-census-sleepers",
        include_str!("../../../scenarios/linux-census-sleepers.toml"),
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
pub const NAMES: [&str; BUILTINS.len()] = {
    let mut names = [""; BUILTINS.len()];
    let mut i = 0;
    while i < BUILTINS.len() {
        names[i] = BUILTINS[i].0;
        i += 1;
    }
    names
};

/// Returns the TOML of the built-in called `name`.
pub fn text(name: &str) -> Option<&'static str> {
    BUILTINS
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .map(|(_, text)| *text)
}
