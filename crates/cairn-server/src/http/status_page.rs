//! The status page (`GET /`): one self-contained HTML file (inline CSS and JavaScript, no
//! external resource), with the node's current status embedded so that it renders at once;
//! it then fetches `/api/status` every 2 s. Both are `CairnApi::cluster_status`, the model
//! `cairn cluster status` prints.

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
