//! Events between `cairn_types` and the proto messages, for the server and the client
//! alike: an event's stored fields, an expected revision, a violation, and a new event
//! (whose id is parsed: the one conversion here that can fail).

use cairn_types::stream::{format_event_id, new_event_id, parse_event_id};
use cairn_types::{EventFields, ExpectedRevision, NewEvent, RevisionViolation};

use crate::v1 as pb;
use crate::v1::expected_revision::Expected;

impl From<EventFields> for pb::EventFields {
    fn from(event: EventFields) -> pb::EventFields {
        pb::EventFields {
            event_id: format_event_id(&event.event_id),
            stream_revision: event.stream_revision,
            event_type: event.event_type,
            content_type: event.content_type,
            metadata: event.metadata,
            tags: event.tags,
        }
    }
}

/// An id that is not a UUID (never written by a server) reads as the nil UUID.
impl From<pb::EventFields> for EventFields {
    fn from(event: pb::EventFields) -> EventFields {
        EventFields {
            event_id: parse_event_id(&event.event_id).unwrap_or_default(),
            stream_revision: event.stream_revision,
            event_type: event.event_type,
            content_type: event.content_type,
            metadata: event.metadata,
            tags: event.tags,
        }
    }
}

impl From<ExpectedRevision> for pb::ExpectedRevision {
    fn from(expected: ExpectedRevision) -> pb::ExpectedRevision {
        let expected = match expected {
            ExpectedRevision::Any => Expected::Any(true),
            ExpectedRevision::NoStream => Expected::NoStream(true),
            ExpectedRevision::Exists => Expected::Exists(true),
            ExpectedRevision::Exact(revision) => Expected::Revision(revision),
        };
        pb::ExpectedRevision { expected: Some(expected) }
    }
}

/// Unset means no condition.
pub fn expected_from_proto(expected: Option<pb::ExpectedRevision>) -> ExpectedRevision {
    match expected.and_then(|expected| expected.expected) {
        None | Some(Expected::Any(_)) => ExpectedRevision::Any,
        Some(Expected::NoStream(_)) => ExpectedRevision::NoStream,
        Some(Expected::Exists(_)) => ExpectedRevision::Exists,
        Some(Expected::Revision(revision)) => ExpectedRevision::Exact(revision),
    }
}

impl From<RevisionViolation> for pb::RevisionViolation {
    fn from(violation: RevisionViolation) -> pb::RevisionViolation {
        pb::RevisionViolation {
            stream: violation.stream,
            expected: Some(violation.expected.into()),
            actual_revision: violation.actual,
        }
    }
}

impl From<pb::RevisionViolation> for RevisionViolation {
    fn from(violation: pb::RevisionViolation) -> RevisionViolation {
        RevisionViolation {
            stream: violation.stream,
            expected: expected_from_proto(violation.expected),
            actual: violation.actual_revision,
        }
    }
}

impl From<NewEvent> for pb::Event {
    fn from(event: NewEvent) -> pb::Event {
        pb::Event {
            event_id: format_event_id(&event.event_id),
            event_type: event.event_type,
            content_type: event.content_type,
            data: event.data,
            metadata: event.metadata,
            tags: event.tags,
        }
    }
}

/// An event id that is not a UUID.
#[derive(Debug, thiserror::Error)]
#[error("event id {0:?} is not a UUID (e.g. 0b5c6f5e-6f2a-4d1c-9d47-3e0c1a2b3c4d)")]
pub struct BadEventId(pub String);

/// A new event; an empty id gets a random one.
pub fn new_event_from_proto(event: pb::Event) -> Result<NewEvent, BadEventId> {
    let event_id = if event.event_id.is_empty() {
        new_event_id()
    } else {
        parse_event_id(&event.event_id).ok_or(BadEventId(event.event_id))?
    };
    Ok(NewEvent {
        event_id,
        event_type: event.event_type,
        content_type: event.content_type,
        data: event.data,
        metadata: event.metadata,
        tags: event.tags,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn events_survive_conversion() {
        let event = NewEvent {
            event_id: new_event_id(),
            event_type: "Deposited".into(),
            content_type: "application/json".into(),
            data: Bytes::from_static(b"{\"amount\":5}"),
            metadata: Bytes::from_static(b"{}"),
            tags: vec!["account=42".into()],
        };
        assert_eq!(new_event_from_proto(pb::Event::from(event.clone())).expect("converts"), event);
        let fields = EventFields {
            event_id: event.event_id,
            stream_revision: 3,
            event_type: event.event_type.clone(),
            content_type: event.content_type.clone(),
            metadata: event.metadata.clone(),
            tags: event.tags.clone(),
        };
        assert_eq!(EventFields::from(pb::EventFields::from(fields.clone())), fields);
        for expected in
            [ExpectedRevision::Any, ExpectedRevision::NoStream, ExpectedRevision::Exists, ExpectedRevision::Exact(7)]
        {
            assert_eq!(expected_from_proto(Some(expected.into())), expected);
        }
        assert_eq!(expected_from_proto(None), ExpectedRevision::Any);
        let mut bad = pb::Event::from(event);
        bad.event_id = "not-a-uuid".into();
        assert!(new_event_from_proto(bad).is_err());
        let mut unnamed = pb::Event::from(NewEvent { event_id: [0; 16], ..fields_event() });
        unnamed.event_id.clear();
        assert_ne!(new_event_from_proto(unnamed).expect("converts").event_id, [0; 16]);
    }

    fn fields_event() -> NewEvent {
        NewEvent {
            event_id: [1; 16],
            event_type: "T".into(),
            content_type: String::new(),
            data: Bytes::new(),
            metadata: Bytes::new(),
            tags: Vec::new(),
        }
    }
}
