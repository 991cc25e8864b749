//! Serde helpers shared by the sensor types.

use serde::{Deserialize, Deserializer};

/// Reads an explicit `null` (YAML `key:` with nothing after it) as the type's default, as upstream's
/// Go decoder does for lists and maps.
pub(crate) fn null_as_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

/// `skip_serializing_if` for booleans that default to false.
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}
