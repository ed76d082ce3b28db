//! `keel conversations list|show`: the conversations on record, and one with its messages.

use clap::Subcommand;
use keel::{App, AppError, ConversationDetail, ConversationSummary};

use crate::output::{self, Human, Text};

#[derive(Subcommand)]
pub enum ConversationsCommand {
    List {
        #[arg(long)]
        json: bool,
    },
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
}

impl ConversationsCommand {
    pub fn json(&self) -> bool {
        match self {
            ConversationsCommand::List { json } | ConversationsCommand::Show { json, .. } => *json,
        }
    }
}

impl Human for Vec<ConversationSummary> {
    fn human(&self) -> Text {
        let mut text = Text::new();
        for c in self {
            text.line(format!("{:>6}  {:>3} messages  {}", c.id, c.message_count, c.title));
        }
        text
    }
}

impl Human for ConversationDetail {
    fn human(&self) -> Text {
        let mut text = Text::new();
        text.line(self.conversation.title.clone());
        for m in &self.messages {
            text.line(format!("\n[{}]{}\n{}", m.role.as_str(), m.run_id.map(|r| format!(" run {r}")).unwrap_or_default(), m.content));
        }
        text
    }
}

pub fn run(command: ConversationsCommand) -> Result<(), AppError> {
    let app = App::open_default()?;
    match command {
        ConversationsCommand::List { json } => output::emit(json, &app.list_conversations()?),
        ConversationsCommand::Show { id, json } => output::emit(json, &app.get_conversation(id)?),
    }
    Ok(())
}
