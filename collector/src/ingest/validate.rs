//! Validation of what an agent sends, before anything is stored: a report must name its
//! instance and sequence number and stay within the size limit. Each failure says exactly what
//! is wrong and maps to gRPC `InvalidArgument`.

use vigil_proto::v1::{Hello, Report};

use crate::error::{ErrorCode, HasErrorCode};
use crate::events::RejectReason;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    #[error("hello: agent_instance {0:?} is not a UUID")]
    HelloInstance(String),
    #[error("hello: machine_id is empty; plaintext registration needs the host's machine id")]
    HelloMachineId,
    #[error("hello: {field} is longer than {max} bytes")]
    HelloFieldTooLong { field: &'static str, max: usize },
    #[error("the first message on a report stream must be a Hello")]
    NoHello,
    #[error("a second Hello on one stream")]
    RepeatedHello,
    #[error("report has no agent_instance")]
    MissingInstance,
    #[error("report has no seq (seq starts at 1)")]
    MissingSeq,
    #[error("report seq {seq}: agent_instance {got:?} differs from the stream's {expected:?}")]
    InstanceMismatch { seq: u64, got: String, expected: String },
    #[error("report seq {seq} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { seq: u64, size: usize, limit: usize },
    #[error("message over the size limit of {limit} bytes: {detail}")]
    MessageTooLarge { limit: usize, detail: String },
    #[error("empty message")]
    Empty,
}

impl InvalidInput {
    pub fn reject_reason(&self) -> RejectReason {
        match self {
            Self::TooLarge { .. } | Self::MessageTooLarge { .. } => RejectReason::TooLarge,
            Self::NoHello | Self::RepeatedHello | Self::InstanceMismatch { .. } => {
                RejectReason::ProtocolViolation
            }
            _ => RejectReason::Malformed,
        }
    }
}

impl HasErrorCode for InvalidInput {
    fn code(&self) -> ErrorCode {
        ErrorCode::InvalidArgument
    }
}

const MAX_HELLO_FIELD: usize = 256;

pub fn hello(h: &Hello) -> Result<(), InvalidInput> {
    if uuid::Uuid::parse_str(&h.agent_instance).is_err() {
        return Err(InvalidInput::HelloInstance(h.agent_instance.clone()));
    }
    if h.machine_id.trim().is_empty() {
        return Err(InvalidInput::HelloMachineId);
    }
    for (field, value) in [
        ("machine_id", &h.machine_id),
        ("hostname", &h.hostname),
        ("agent_version", &h.agent_version),
    ] {
        if value.len() > MAX_HELLO_FIELD {
            return Err(InvalidInput::HelloFieldTooLong { field, max: MAX_HELLO_FIELD });
        }
    }
    Ok(())
}

pub fn report(r: &Report, stream_instance: &str, limit: usize) -> Result<(), InvalidInput> {
    if r.agent_instance.is_empty() {
        return Err(InvalidInput::MissingInstance);
    }
    if r.seq == 0 {
        return Err(InvalidInput::MissingSeq);
    }
    if r.agent_instance != stream_instance {
        return Err(InvalidInput::InstanceMismatch {
            seq: r.seq,
            got: r.agent_instance.clone(),
            expected: stream_instance.to_owned(),
        });
    }
    let size = prost::Message::encoded_len(r);
    if size > limit {
        return Err(InvalidInput::TooLarge { seq: r.seq, size, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSTANCE: &str = "6f1c1c8e-7c55-4f0e-9d7c-3f7a6a1b2c3d";

    fn ok_report() -> Report {
        Report { agent_instance: INSTANCE.into(), seq: 1, ..Default::default() }
    }

    #[test]
    fn accepts_a_well_formed_report() {
        assert_eq!(report(&ok_report(), INSTANCE, 1024), Ok(()));
    }

    #[test]
    fn rejects_missing_instance_and_seq() {
        let r = Report { agent_instance: String::new(), ..ok_report() };
        assert_eq!(report(&r, INSTANCE, 1024), Err(InvalidInput::MissingInstance));
        let r = Report { seq: 0, ..ok_report() };
        assert_eq!(report(&r, INSTANCE, 1024), Err(InvalidInput::MissingSeq));
    }

    #[test]
    fn rejects_oversized_report_with_sizes() {
        let r = Report { facts: Some(Default::default()), ..ok_report() };
        let mut big = r.clone();
        big.facts.as_mut().unwrap().hostname = "x".repeat(2000);
        let err = report(&big, INSTANCE, 1024).unwrap_err();
        assert!(err.to_string().starts_with("report seq 1 is 20"), "{err}");
        assert!(err.to_string().ends_with("over the limit of 1024 bytes"), "{err}");
        assert_eq!(err.code(), ErrorCode::InvalidArgument);
    }

    #[test]
    fn rejects_other_instance_on_stream() {
        let err = report(&ok_report(), "another", 1024).unwrap_err();
        assert_eq!(err.reject_reason(), RejectReason::ProtocolViolation);
    }

    #[test]
    fn hello_needs_uuid_and_machine_id() {
        let good = Hello {
            agent_instance: INSTANCE.into(),
            machine_id: "abc".into(),
            ..Default::default()
        };
        assert_eq!(hello(&good), Ok(()));
        let bad = Hello { agent_instance: "nope".into(), ..good.clone() };
        assert!(matches!(hello(&bad), Err(InvalidInput::HelloInstance(_))));
        let bad = Hello { machine_id: " ".into(), ..good };
        assert_eq!(hello(&bad), Err(InvalidInput::HelloMachineId));
    }
}
