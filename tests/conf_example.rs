//! `conf/wsgate.toml` documents every key of the schema: this test asks serde for the
//! field names each config type accepts and checks each appears in the example
//! (as `key =`, commented out or not), and that the example itself is valid.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::path::Path;
use wsgate::config::{self, schema};

/// A deserializer that only records the field names a struct asks for.
struct Fields(Vec<&'static str>);

#[derive(Debug)]
struct Done;
impl std::fmt::Display for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("done")
    }
}
impl std::error::Error for Done {}
impl de::Error for Done {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Done
    }
}

impl<'de> Deserializer<'de> for &mut Fields {
    type Error = Done;
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Done> {
        self.0.extend_from_slice(fields);
        Err(Done)
    }
    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Done> {
        Err(Done)
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

fn fields<T: for<'de> Deserialize<'de>>() -> Vec<&'static str> {
    let mut f = Fields(Vec::new());
    let _ = T::deserialize(&mut f);
    assert!(
        !f.0.is_empty(),
        "{} has no fields?",
        std::any::type_name::<T>()
    );
    f.0
}

#[test]
fn every_key_is_documented_in_the_example() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/wsgate.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let keys = [
        fields::<schema::File>(),
        fields::<schema::Server>(),
        fields::<schema::Admin>(),
        fields::<config::Limits>(),
        fields::<schema::Listener>(),
        fields::<schema::Pool>(),
        fields::<schema::Backend>(),
        fields::<config::HealthConf>(),
        fields::<schema::Route>(),
        fields::<schema::CertificateFile>(),
        fields::<schema::AuthFile>(),
        fields::<schema::MatchSpec>(),
        fields::<schema::WeightedPool>(),
        fields::<config::RouteLimits>(),
    ]
    .concat();
    let documented = |k: &str| {
        text.lines().any(|l| {
            let l = l.trim_start_matches(['#', ' ']);
            l.starts_with(&format!("{k} ="))
                || l.starts_with(&format!("[{k}]"))
                || l.contains(&format!("[[{k}]]"))
                || l.contains(&format!(".{k}]"))
        })
    };
    let missing: Vec<&str> = keys.into_iter().filter(|k| !documented(k)).collect();
    assert!(
        missing.is_empty(),
        "keys not documented in conf/wsgate.toml: {missing:?}"
    );
    config::Config::load(&path).expect("the example config is valid");
}
