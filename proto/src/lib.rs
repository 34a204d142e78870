//! The agent's gRPC API (`innoxide.agent.v1`), generated from `proto/innoxide`.
pub mod agent {
    pub mod v1 {
        tonic::include_proto!("innoxide.agent.v1");
    }
}
