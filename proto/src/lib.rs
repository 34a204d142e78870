//! The agent's gRPC API (`innoxide.agent.v1`), generated from `proto/innoxide`.
#![forbid(unsafe_code)]

pub mod agent {
    pub mod v1 {
        tonic::include_proto!("innoxide.agent.v1");

        use std::fmt;

        /// Says which kind of source a credential has, never its value.
        impl fmt::Debug for SecretRef {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("SecretRef")
                    .field("source", &self.source)
                    .finish()
            }
        }

        impl fmt::Debug for secret_ref::Source {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    secret_ref::Source::Value(_) => f.write_str("Value(***)"),
                    secret_ref::Source::File(path) => f.debug_tuple("File").field(path).finish(),
                }
            }
        }

        /// The trailer that names the running backup when a second one is refused.
        pub const RUNNING_OPERATION_TRAILER: &str = "innoxide-running-operation";
    }
}

pub mod restore_spec;

/// Well-known types the API uses (`google.protobuf.Timestamp`).
pub use prost_types;

#[cfg(test)]
mod tests {
    use super::agent::v1::{MysqlCredentials, SecretRef, secret_ref};

    #[test]
    fn debug_output_never_shows_a_credential() {
        let creds = MysqlCredentials {
            user: "backup".into(),
            password: Some(SecretRef {
                source: Some(secret_ref::Source::Value("hunter2".into())),
            }),
        };
        let text = format!("{creds:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("backup") && text.contains("Value(***)"),
            "{text}"
        );
        let file = SecretRef {
            source: Some(secret_ref::Source::File("/secrets/pw".into())),
        };
        assert!(format!("{file:?}").contains("/secrets/pw"));
    }
}
