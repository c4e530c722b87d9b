//! The wire form of a record's `Option<Policy>`: the policy's name, or `""` where no policy
//! applies (a cost measured outside any thread, a stack fault with no thread to blame).
//!
//! `#[serde(with = "crate::policy_or_none")]` on the field.

use core::fmt;

use dks_core::Policy;
use dks_core::policy::POLICY_NAMES;
use serde::{Deserializer, Serializer, de};

/// Writes the policy's name, or `""` for none.
#[allow(
    clippy::ref_option,
    reason = "serde's `with` passes a reference to the field"
)]
pub fn serialize<S: Serializer>(policy: &Option<Policy>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(policy.map_or("", Policy::name))
}

/// Reads a policy's name, or `""` for none; any other name is an error.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Policy>, D::Error> {
    struct NameOrEmpty;
    impl de::Visitor<'_> for NameOrEmpty {
        type Value = Option<Policy>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a policy name or \"\"")
        }
        fn visit_str<E: de::Error>(self, name: &str) -> Result<Option<Policy>, E> {
            match name {
                "" => Ok(None),
                name => name
                    .parse()
                    .map(Some)
                    .map_err(|_| E::unknown_variant(name, &POLICY_NAMES)),
            }
        }
    }
    deserializer.deserialize_str(NameOrEmpty)
}
