//! The status page (`GET /`): one self-contained HTML file (inline CSS and JavaScript, no
//! external resource), with the node's current status embedded so that it renders at once;
//! it then fetches `/api/status` every 2 s. Both are `CairnApi::cluster_status`, the model
//! `cairn cluster status` prints.
//!
//! Consumer groups are a field of the same model (`cluster_status_with_groups`), rendered
//! next to the topics.

use crate::api::ClusterStatus;

const PAGE: &str = include_str!("status_page.html");
const INITIAL_STATUS: &str = "/*INITIAL_STATUS*/";

/// The page with `status` embedded.
pub fn render(status: &ClusterStatus) -> Result<String, serde_json::Error> {
    // Inside <script>, "</" could end the element early: JSON allows "<\/" for it.
    let json = serde_json::to_string(status)?.replace("</", "<\\/");
    Ok(PAGE.replacen(INITIAL_STATUS, &json, 1))
}

/// `/api/status`: the status as JSON.
pub fn json(status: &ClusterStatus) -> Result<String, serde_json::Error> {
    serde_json::to_string(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{NodeStatus, PartitionStatus, TopicStatus};

    fn status(topic: &str) -> ClusterStatus {
        ClusterStatus {
            node_id: 1,
            nodes: vec![NodeStatus { node_id: 1, address: "127.0.0.1:7070".into(), live: true }],
            groups: Vec::new(),
            cluster: "c".into(),
            operations: Vec::new(),
            version: "0.1.0",
            topics: vec![TopicStatus {
                name: topic.into(),
                replication_factor: 1,
                partitions: vec![PartitionStatus {
                    partition: 0,
                    group_id: 1,
                    replicas: vec![1],
                    leader: Some(1),
                    under_replicated: false,
                    moving: false,
                    high_watermark: Some(3),
                }],
            }],
            consumer_groups: Vec::new(),
            consumer_groups_error: None,
        }
    }

    #[test]
    fn the_page_embeds_the_status_once_and_nothing_ends_its_script_early() {
        let page = render(&status("</script><b>x")).expect("render");
        assert!(!page.contains(INITIAL_STATUS), "the placeholder is replaced");
        assert_eq!(page.matches("</script>").count(), 2, "only the page's own two scripts end");
        let start = page.find("application/json\">").expect("status script") + "application/json\">".len();
        let end = start + page[start..].find("</script>").expect("its end");
        let embedded: serde_json::Value = serde_json::from_str(&page[start..end]).expect("embedded JSON");
        assert_eq!(embedded["topics"][0]["name"], "</script><b>x");
        assert_eq!(embedded["topics"][0]["partitions"][0]["leader"], 1);
    }
}
