//! An event append checked before anything is proposed: its shape (streams named once,
//! events typed, ids unique) and the node's limits (`cairn_types::Limits` and the event
//! limits of `cairn_types::stream`), each refusal naming what to change.

use std::collections::HashSet;

use cairn_raft::{StreamCheck, StreamWrite};
use cairn_types::event_query::{QUERY_ITEMS_MAX, QUERY_TERMS_MAX};
use cairn_types::stream::{
    EVENT_TAG_BYTES_MAX, EVENT_TAGS_MAX, EVENT_TYPE_BYTES_MAX, STREAM_NAME_BYTES_MAX, format_event_id,
};
use cairn_types::{EventQuery, Limits};

use crate::api::{ApiError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum EventInputError {
    #[error("an event append needs at least one event")]
    NoEvents,
    #[error("a stream name is empty: name every stream written or checked")]
    StreamNameEmpty,
    #[error("stream name {stream:?}... has {bytes} bytes; the limit is {max}")]
    StreamNameTooLong { stream: String, bytes: usize, max: usize },
    #[error("stream {0:?} is listed twice: write or check each stream once per append")]
    StreamListedTwice(String),
    #[error("event {index} has no event type: every event needs one")]
    EventTypeEmpty { index: usize },
    #[error("event {index} has type {event_type:?}: types starting with '$' are reserved for Cairn's own records")]
    EventTypeReserved { index: usize, event_type: String },
    #[error("event {index}: its {what} has {bytes} bytes; the limit is {max}")]
    FieldTooLong { index: usize, what: &'static str, bytes: usize, max: usize },
    #[error("event {index} has {count} tags; the limit is {max}")]
    TooManyTags { index: usize, count: usize, max: usize },
    #[error("{count} events in one append; the limit is {max} (records_per_request_max): split the append")]
    TooManyEvents { count: usize, max: usize },
    #[error("the append carries {bytes} bytes; the limit is {max} bytes per request (request_bytes_max): split it")]
    RequestTooLarge { bytes: usize, max: usize },
    #[error("event id {} appears twice in the append: every event needs its own id", format_event_id(.event_id))]
    EventIdRepeated { event_id: [u8; 16] },
    #[error("the query has {count} items; the limit is {max}: split it into several queries")]
    TooManyQueryItems { count: usize, max: usize },
    #[error("the query names {count} types and tags in all; the limit is {max}: split it into several queries")]
    TooManyQueryTerms { count: usize, max: usize },
    #[error("a query {what} has {bytes} bytes; the limit is {max}")]
    QueryTermTooLong { what: &'static str, bytes: usize, max: usize },
    #[error("a query {what} is empty: name one, or leave the item's {what}s out to match any")]
    QueryTermEmpty { what: &'static str },
}

impl ApiError for EventInputError {
    fn code(&self) -> ErrorCode {
        match self {
            EventInputError::FieldTooLong { .. }
            | EventInputError::TooManyTags { .. }
            | EventInputError::TooManyEvents { .. }
            | EventInputError::RequestTooLarge { .. }
            | EventInputError::TooManyQueryItems { .. }
            | EventInputError::TooManyQueryTerms { .. }
            | EventInputError::QueryTermTooLong { .. } => ErrorCode::ResourceExhausted,
            _ => ErrorCode::InvalidArgument,
        }
    }
}

/// Refuses an event append that is malformed or breaks one of `limits`.
pub fn check_events(writes: &[StreamWrite], checks: &[StreamCheck], limits: &Limits) -> Result<(), EventInputError> {
    let mut streams = HashSet::new();
    for stream in writes.iter().map(|w| &w.stream).chain(checks.iter().map(|c| &c.stream)) {
        if stream.is_empty() {
            return Err(EventInputError::StreamNameEmpty);
        }
        let max = STREAM_NAME_BYTES_MAX.min(limits.record_key_bytes_max);
        if stream.len() > max {
            let shown: String = stream.chars().take(40).collect();
            return Err(EventInputError::StreamNameTooLong { stream: shown, bytes: stream.len(), max });
        }
        if !streams.insert(stream.as_str()) {
            return Err(EventInputError::StreamListedTwice(stream.clone()));
        }
    }
    let count: usize = writes.iter().map(|w| w.events.len()).sum();
    if count == 0 {
        return Err(EventInputError::NoEvents);
    }
    if count > limits.records_per_request_max {
        return Err(EventInputError::TooManyEvents { count, max: limits.records_per_request_max });
    }
    let mut ids = HashSet::with_capacity(count);
    let mut total = 0usize;
    for (index, event) in writes.iter().flat_map(|w| &w.events).enumerate() {
        if event.event_type.is_empty() {
            return Err(EventInputError::EventTypeEmpty { index });
        }
        if event.event_type.starts_with('$') {
            return Err(EventInputError::EventTypeReserved { index, event_type: event.event_type.clone() });
        }
        let too_long = |what, bytes: usize, max| {
            (bytes > max).then_some(EventInputError::FieldTooLong { index, what, bytes, max })
        };
        let fields = [
            too_long("event type", event.event_type.len(), EVENT_TYPE_BYTES_MAX),
            too_long("content type", event.content_type.len(), EVENT_TYPE_BYTES_MAX),
            too_long("data", event.data.len(), limits.record_value_bytes_max),
            too_long("metadata", event.metadata.len(), limits.record_value_bytes_max),
        ];
        if let Some(err) = fields.into_iter().flatten().next() {
            return Err(err);
        }
        if event.tags.len() > EVENT_TAGS_MAX {
            return Err(EventInputError::TooManyTags { index, count: event.tags.len(), max: EVENT_TAGS_MAX });
        }
        if let Some(tag) = event.tags.iter().find(|tag| tag.len() > EVENT_TAG_BYTES_MAX) {
            return Err(EventInputError::FieldTooLong {
                index,
                what: "tag",
                bytes: tag.len(),
                max: EVENT_TAG_BYTES_MAX,
            });
        }
        if !ids.insert(event.event_id) {
            return Err(EventInputError::EventIdRepeated { event_id: event.event_id });
        }
        total += event.size_bytes();
    }
    if total > limits.request_bytes_max {
        return Err(EventInputError::RequestTooLarge { bytes: total, max: limits.request_bytes_max });
    }
    Ok(())
}

/// Refuses a query (of a read or an append condition) past the query limits of
/// `cairn_types::event_query`, or with an empty type or tag.
pub fn check_query(query: &EventQuery) -> Result<(), EventInputError> {
    if query.items.len() > QUERY_ITEMS_MAX {
        return Err(EventInputError::TooManyQueryItems { count: query.items.len(), max: QUERY_ITEMS_MAX });
    }
    if query.term_count() > QUERY_TERMS_MAX {
        return Err(EventInputError::TooManyQueryTerms { count: query.term_count(), max: QUERY_TERMS_MAX });
    }
    for item in &query.items {
        let terms = item.types.iter().map(|t| ("type", t, EVENT_TYPE_BYTES_MAX));
        for (what, term, max) in terms.chain(item.tags.iter().map(|t| ("tag", t, EVENT_TAG_BYTES_MAX))) {
            if term.is_empty() {
                return Err(EventInputError::QueryTermEmpty { what });
            }
            if term.len() > max {
                return Err(EventInputError::QueryTermTooLong { what, bytes: term.len(), max });
            }
        }
    }
    Ok(())
}
