//! `batchd webhooks …`: manages batchd's completion webhook endpoints (`/v1/batchd/webhooks`)
//! for the caller's workspace through `batchd-client`, with the same base URL and key options as
//! `batchd batches`: create, list, get, delete, rotate the signing secret, and an endpoint's
//! recent deliveries. `create` and `rotate` print the secret: the API shows it only then.

use anyhow::Result;
use batchd_client::Client;
use batchd_client::wire::webhooks::{CreateWebhookEndpoint, WebhookDelivery, WebhookEndpoint};
use clap::{Args, Subcommand};

use super::{ApiArgs, exit_code, output, print_out, println_out};

/// Options shared by every `webhooks` command.
#[derive(Debug, Args)]
pub struct WebhooksArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: WebhooksCommand,
}

#[derive(Debug, Subcommand)]
enum WebhooksCommand {
    /// Register an endpoint; prints its signing secret (shown only now).
    Create {
        /// Where events are POSTed (https://, unless the server allows http).
        #[arg(long)]
        url: String,
        /// An event type to deliver (repeatable; default: message_batch.ended).
        #[arg(long = "event")]
        events: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List the workspace's endpoints, oldest first.
    List,
    /// Show one endpoint.
    Get { id: String },
    /// Delete an endpoint; its pending deliveries are not sent.
    Delete { id: String },
    /// Give an endpoint a new signing secret and print it; the previous one keeps signing
    /// alongside it for a while, so receivers can switch without losing events.
    Rotate { id: String },
    /// An endpoint's recent deliveries, newest first.
    Deliveries { id: String },
}

/// Runs a `webhooks` command; returns the process exit code (usage errors exit from here).
pub async fn run(args: WebhooksArgs) -> i32 {
    let api_key = args.api.key_or_exit();
    exit_code(execute(args, api_key).await)
}

async fn execute(args: WebhooksArgs, api_key: String) -> Result<()> {
    let client: Client = args.api.client(api_key).build()?;
    let json = args.api.json;
    match args.command {
        WebhooksCommand::Create {
            url,
            events,
            description,
        } => {
            let body = CreateWebhookEndpoint {
                url,
                events: (!events.is_empty()).then_some(events),
                description,
            };
            print_endpoint(&client.create_webhook(&body).await?, json)
        }
        WebhooksCommand::List => {
            let page = client.list_webhooks().await?;
            if json {
                return println_out(&serde_json::to_string(&page)?);
            }
            print_out(&output::webhook_table(&page.data))
        }
        WebhooksCommand::Get { id } => print_endpoint(&client.retrieve_webhook(&id).await?, json),
        WebhooksCommand::Delete { id } => {
            let deleted = client.delete_webhook(&id).await?;
            if json {
                println_out(&serde_json::to_string(&deleted)?)
            } else {
                println_out(&format!("deleted {}", deleted.id))
            }
        }
        WebhooksCommand::Rotate { id } => {
            print_endpoint(&client.rotate_webhook_secret(&id).await?, json)
        }
        WebhooksCommand::Deliveries { id } => {
            let list = client.webhook_deliveries(&id).await?;
            if json {
                return println_out(&serde_json::to_string(&list)?);
            }
            print_out(&output::delivery_table(&list.data))
        }
    }
}

fn print_endpoint(endpoint: &WebhookEndpoint, json: bool) -> Result<()> {
    if json {
        println_out(&serde_json::to_string(endpoint)?)
    } else {
        print_out(&output::webhook_fields(endpoint))
    }
}

/// What a delivery's last attempt said: the receiver's status, or why it got none.
pub fn last_outcome(d: &WebhookDelivery) -> String {
    match (d.last_status, &d.last_error) {
        (Some(status), _) => status.to_string(),
        (None, Some(error)) => error.clone(),
        (None, None) => "-".into(),
    }
}
