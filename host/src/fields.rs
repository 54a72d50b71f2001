//! The field names of a type that serde's derive deserializes as a struct,
//! as the derive lists them: so that the configuration can tell a field
//! that exists from a typo without a second list to keep in step.

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// The fields `T` deserializes (those of its `#[serde(try_from)]` source,
/// where it has one); empty for a type that is not a struct.
pub(crate) fn of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields = None;
    let _ = T::deserialize(Fields(&mut fields));
    fields.unwrap_or(&[])
}

/// A deserializer that records the fields a struct asks for, and fails.
struct Fields<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> Deserializer<'de> for Fields<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(de::Error::custom("fields recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Two {
        a: u8,
        #[serde(rename = "b-b")]
        b: String,
    }

    #[test]
    fn lists_a_structs_fields() {
        assert_eq!(of::<Two>(), ["a", "b-b"]);
        assert!(of::<u8>().is_empty());
    }
}
