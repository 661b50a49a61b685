//! `agentd inbox`: approvals and questions waiting for this teammate.

use clap::Args;

use crate::cmd::Ctx;
use crate::error::Result;
use crate::hub::Inbox as InboxView;

/// List the approvals and questions waiting for you
#[derive(Debug, Args)]
pub struct Inbox {}

impl Inbox {
    pub async fn run(self, ctx: Ctx) -> Result<()> {
        let inbox: InboxView = ctx.hub()?.get("v1/me/inbox").await?;
        ctx.print(&inbox, || human(&inbox));
        Ok(())
    }
}

fn human(inbox: &InboxView) -> String {
    if inbox.approvals.is_empty() && inbox.questions.is_empty() {
        return "nothing is waiting for you".into();
    }
    let mut text = String::new();
    if !inbox.approvals.is_empty() {
        text.push_str("Approvals (agentd approve STEP_ID / agentd reject STEP_ID --comment …):\n");
        for approval in &inbox.approvals {
            text.push_str(&format!(
                "  {}  {} (level {})\n",
                approval.step_id, approval.step_title, approval.approval_level
            ));
            if let Some(summary) = &approval.summary {
                text.push_str(&format!("      summary: {summary}\n"));
            }
        }
    }
    if !inbox.questions.is_empty() {
        text.push_str("Questions (agentd answer ID TEXT; tool approvals: agentd approve ID):\n");
        for question in &inbox.questions {
            text.push_str(&format!(
                "  {}  {}: {}",
                question.id, question.step_title, question.question
            ));
            if !question.options.is_empty() {
                text.push_str(&format!(" [{}]", question.options.join(" / ")));
            }
            text.push('\n');
        }
    }
    text
}
