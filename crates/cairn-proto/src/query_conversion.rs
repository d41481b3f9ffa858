//! Event queries (DCB) to and from their proto messages, both ways (clients send them and
//! nodes forward them).

use cairn_types::{ConditionViolations, EventQuery, QueryCondition, QueryItem, QueryViolation, RevisionViolation};

use crate::v1 as pb;

impl From<EventQuery> for pb::EventQuery {
    fn from(query: EventQuery) -> pb::EventQuery {
        let items = query.items.into_iter().map(|item| pb::QueryItem { types: item.types, tags: item.tags });
        pb::EventQuery { items: items.collect() }
    }
}

/// An unset query matches every event, as an empty one does.
pub fn query_from_proto(query: Option<pb::EventQuery>) -> EventQuery {
    let items = query.unwrap_or_default().items.into_iter();
    EventQuery { items: items.map(|item| QueryItem { types: item.types, tags: item.tags }).collect() }
}

impl From<QueryCondition> for pb::QueryCondition {
    fn from(condition: QueryCondition) -> pb::QueryCondition {
        pb::QueryCondition { query: Some(condition.query.into()), after: condition.after }
    }
}

impl From<pb::QueryCondition> for QueryCondition {
    fn from(condition: pb::QueryCondition) -> QueryCondition {
        QueryCondition { query: query_from_proto(condition.query), after: condition.after }
    }
}

impl From<ConditionViolations> for pb::ConditionsFailed {
    fn from(violations: ConditionViolations) -> pb::ConditionsFailed {
        pb::ConditionsFailed {
            violations: violations.revisions.into_iter().map(pb::RevisionViolation::from).collect(),
            query: violations
                .query
                .map(|query| pb::QueryViolation { after: query.after, first_match: query.first_match }),
        }
    }
}

impl From<pb::ConditionsFailed> for ConditionViolations {
    fn from(details: pb::ConditionsFailed) -> ConditionViolations {
        ConditionViolations {
            revisions: details.violations.into_iter().map(RevisionViolation::from).collect(),
            query: details.query.map(|query| QueryViolation { after: query.after, first_match: query.first_match }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_violations_round_trip() {
        let query = EventQuery {
            items: vec![
                QueryItem { types: vec!["Enrolled".into()], tags: vec!["course=1".into(), "student=a".into()] },
                QueryItem { types: vec![], tags: vec!["course=2".into()] },
            ],
        };
        let condition = QueryCondition { query: query.clone(), after: Some(41) };
        assert_eq!(QueryCondition::from(pb::QueryCondition::from(condition.clone())), condition);
        assert_eq!(query_from_proto(None), EventQuery::all());
        let violations = ConditionViolations {
            revisions: vec![RevisionViolation {
                stream: "s".into(),
                expected: cairn_types::ExpectedRevision::NoStream,
                actual: Some(0),
            }],
            query: Some(QueryViolation { after: None, first_match: 3 }),
        };
        assert_eq!(ConditionViolations::from(pb::ConditionsFailed::from(violations.clone())), violations);
    }
}
