//! Queries over the events of one partition, by event type and tag, as the Dynamic
//! Consistency Boundary specification defines them: a query is a list of items, each
//! `{types: any of, tags: all of}`, and an event matches the query when it matches any
//! item. A query with no items, or an item with neither types nor tags, matches every
//! event.
//!
//! A query serves two ends: a read (the events that match, from a position, forwards) and
//! an append condition (`QueryCondition`: fail if an event matching the query is stored
//! after a position). A read answers the position to pass back as the condition's `after`,
//! so that "nothing I read has changed" is checked when the partition's state machine
//! applies the append.

use serde::{Deserialize, Serialize};

use crate::Offset;

/// Most items in one query, and most types and tags in all its items together (each one
/// is an index cursor while the query runs).
pub const QUERY_ITEMS_MAX: usize = 16;
pub const QUERY_TERMS_MAX: usize = 64;

/// Events matching any of `items`; every event when there is none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventQuery {
    pub items: Vec<QueryItem>,
}

/// Events of any of `types` (every type when empty) that carry all of `tags`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryItem {
    pub types: Vec<String>,
    pub tags: Vec<String>,
}

impl QueryItem {
    /// Events of any of `types` that carry all of `tags`.
    pub fn new<Type: Into<String>, Tag: Into<String>>(
        types: impl IntoIterator<Item = Type>,
        tags: impl IntoIterator<Item = Tag>,
    ) -> QueryItem {
        QueryItem {
            types: types.into_iter().map(Into::into).collect(),
            tags: tags.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether the item puts no bound at all on the events it matches.
    pub fn matches_all(&self) -> bool {
        self.types.is_empty() && self.tags.is_empty()
    }

    pub fn matches(&self, event_type: &str, tags: &[String]) -> bool {
        (self.types.is_empty() || self.types.iter().any(|t| t == event_type))
            && self.tags.iter().all(|wanted| tags.contains(wanted))
    }
}

impl EventQuery {
    /// The query that matches every event.
    pub fn all() -> EventQuery {
        EventQuery::default()
    }

    pub fn matches_all(&self) -> bool {
        self.items.is_empty() || self.items.iter().any(QueryItem::matches_all)
    }

    pub fn matches(&self, event_type: &str, tags: &[String]) -> bool {
        self.items.is_empty() || self.items.iter().any(|item| item.matches(event_type, tags))
    }

    /// The types and tags of all items together.
    pub fn term_count(&self) -> usize {
        self.items.iter().map(|item| item.types.len() + item.tags.len()).sum()
    }
}

/// An append condition: no event matching `query` may be stored in the partition after
/// offset `after` (`None`: at all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryCondition {
    pub query: EventQuery,
    pub after: Option<Offset>,
}

/// A query condition that failed: the first event after `after` that matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryViolation {
    pub after: Option<Offset>,
    pub first_match: Offset,
}

impl std::fmt::Display for QueryViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.after {
            Some(after) => {
                write!(f, "an event matching the query was stored after offset {after}, at {}", self.first_match)
            }
            None => write!(f, "an event matching the query is stored, at offset {}", self.first_match),
        }
    }
}

/// Every condition of an append that was not met: streams not at their expected revision,
/// and the query condition's first match. Nothing was written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionViolations {
    pub revisions: Vec<crate::RevisionViolation>,
    pub query: Option<QueryViolation>,
}

impl ConditionViolations {
    pub fn is_empty(&self) -> bool {
        self.revisions.is_empty() && self.query.is_none()
    }
}

impl std::fmt::Display for ConditionViolations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self.revisions.iter().map(ToString::to_string).collect();
        parts.extend(self.query.map(|query| query.to_string()));
        write!(f, "{}", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(types: &[&str], tags: &[&str]) -> QueryItem {
        QueryItem::new(types.iter().copied(), tags.iter().copied())
    }

    fn tags(tags: &[&str]) -> Vec<String> {
        tags.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn types_are_any_of_and_tags_all_of() {
        let enrolled = item(&["Enrolled", "Left"], &["course=c1", "student=s1"]);
        assert!(enrolled.matches("Enrolled", &tags(&["student=s1", "course=c1", "term=1"])));
        assert!(enrolled.matches("Left", &tags(&["course=c1", "student=s1"])));
        assert!(!enrolled.matches("Enrolled", &tags(&["course=c1"])), "every tag is needed");
        assert!(!enrolled.matches("Created", &tags(&["course=c1", "student=s1"])), "one of the types is needed");
        assert!(item(&[], &["course=c1"]).matches("Anything", &tags(&["course=c1"])));
        assert!(item(&["Created"], &[]).matches("Created", &[]));
    }

    #[test]
    fn a_query_matches_when_any_item_does_and_empty_means_every_event() {
        let query =
            EventQuery { items: vec![item(&["Created"], &["course=c1"]), item(&["Enrolled"], &["student=s1"])] };
        assert!(query.matches("Created", &tags(&["course=c1"])));
        assert!(query.matches("Enrolled", &tags(&["student=s1"])));
        assert!(!query.matches("Created", &tags(&["student=s1"])));
        assert!(!query.matches_all());
        assert!(EventQuery::all().matches("Whatever", &[]) && EventQuery::all().matches_all());
        let with_open_item = EventQuery { items: vec![item(&["Created"], &[]), item(&[], &[])] };
        assert!(with_open_item.matches_all() && with_open_item.matches("Other", &[]));
    }

    #[test]
    fn violations_say_what_failed() {
        let violations = ConditionViolations {
            revisions: vec![crate::RevisionViolation {
                stream: "a".into(),
                expected: crate::ExpectedRevision::Exact(1),
                actual: Some(2),
            }],
            query: Some(QueryViolation { after: Some(7), first_match: 9 }),
        };
        assert_eq!(
            violations.to_string(),
            "stream \"a\" is at revision 2, expected revision 1; an event matching the query was stored after offset \
             7, at 9"
        );
        assert!(ConditionViolations::default().is_empty() && !violations.is_empty());
    }
}
