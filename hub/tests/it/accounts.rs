//! Accounts and agents: workspaces, members and roles, API keys, agent registration and
//! tokens, and the isolation of workspaces from each other.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use agenthub::accounts::{self, Actor, ApiKey, Role, token};
use agenthub::agents::{self, NewAgent, model::AgentToken};
use agenthub::approvals::{self, ApprovalRef};
use agenthub::ctx::{Ctx, Settings};
use agenthub::db;
use agenthub::schema::{agent_tokens, api_keys};
use agenthub::store::{StoreError, now_ms};
use agenthub::tasks::{self, NewStep, TaskAction, WorkflowChange, WorkflowOp};
use agenthub_protocol::{Decision, LogStream};

use crate::support::{
    Team, backend_test, expect_err, new_step, new_task, report_task, step_id, submit,
};

// ---------------------------------------------------------------- workspaces and members

backend_test!(
    async fn workspaces_are_created_once_by_name(store) {
        let acme = accounts::create_workspace(&store, "  acme ").await.unwrap();
        assert_eq!(acme.name, "acme", "the name is trimmed");
        assert_eq!(
            accounts::find_workspace(&store, "acme").await.unwrap().id,
            acme.id
        );
        assert_eq!(
            accounts::find_workspace(&store, &acme.id).await.unwrap().name,
            "acme"
        );

        expect_err(
            accounts::create_workspace(&store, "acme").await,
            "conflict",
            "workspace `acme` already exists",
        );
        expect_err(
            accounts::create_workspace(&store, "   ").await,
            "invalid",
            "must not be empty",
        );
        expect_err(
            accounts::find_workspace(&store, "globex").await,
            "not_found",
            "workspace `globex`",
        );
        let names: Vec<String> = accounts::list_workspaces(&store)
            .await
            .unwrap()
            .into_iter()
            .map(|workspace| workspace.name)
            .collect();
        assert_eq!(names, ["acme"]);
    }
);

backend_test!(
    async fn members_join_with_a_role_and_a_valid_unique_email(store) {
        let acme = accounts::create_workspace(&store, "acme").await.unwrap();
        let owner = accounts::add_member(&store, &acme.id, "Aurora@Example.com", None, Role::Owner)
            .await
            .unwrap();
        assert_eq!(owner.email, "aurora@example.com", "emails are lowercased");
        assert_eq!(owner.name, "aurora", "the name defaults to the local part");
        assert_eq!(owner.role, "owner");
        let admin =
            accounts::add_member(&store, &acme.id, "kim@example.com", Some("Kim"), Role::Admin)
                .await
                .unwrap();
        assert_eq!((admin.name.as_str(), admin.role.as_str()), ("Kim", "admin"));
        let member = accounts::add_member(&store, &acme.id, "duan@example.com", None, Role::Member)
            .await
            .unwrap();
        assert_eq!(member.role, "member");
        assert_eq!("admin".parse::<Role>().unwrap(), Role::Admin);
        expect_err("root".parse::<Role>(), "invalid", "unknown role `root`");

        for bad in ["not-an-email", "@example.com", "a@b", "a b@example.com", "a@.com", ""] {
            let err = expect_err(
                accounts::add_member(&store, &acme.id, bad, None, Role::Member).await,
                "invalid",
                "is not an email address",
            );
            assert!(
                matches!(&err, agenthub::error::Error::Invalid { field: Some(field), .. } if field == "email"),
                "{err:?}"
            );
        }
        expect_err(
            accounts::add_member(&store, &acme.id, "DUAN@example.com", None, Role::Admin).await,
            "conflict",
            "duan@example.com is already a member",
        );

        // The same person may belong to another workspace.
        let globex = accounts::create_workspace(&store, "globex").await.unwrap();
        accounts::add_member(&store, &globex.id, "duan@example.com", None, Role::Owner)
            .await
            .unwrap();

        let emails: Vec<(String, String)> = accounts::list_members(&store, &acme.id)
            .await
            .unwrap()
            .into_iter()
            .map(|member| (member.email, member.role))
            .collect();
        assert_eq!(
            emails,
            [
                ("aurora@example.com".to_string(), "owner".to_string()),
                ("kim@example.com".to_string(), "admin".to_string()),
                ("duan@example.com".to_string(), "member".to_string()),
            ]
        );
        assert_eq!(
            accounts::find_member(&store, &acme.id, "KIM@example.com")
                .await
                .unwrap()
                .id,
            admin.id
        );
    }
);

backend_test!(
    async fn the_last_owner_cannot_be_removed(store) {
        let team = Team::new(&store).await;
        let workspace_id = team.workspace_id.clone();
        expect_err(
            accounts::remove_member(&team.ctx, None, &workspace_id, "aurora@example.com").await,
            "conflict",
            "aurora@example.com is the last owner of the workspace",
        );

        // With a second owner the first may go, and then the second is the last one.
        team.add_member("kim@example.com", Role::Owner).await;
        let removed = accounts::remove_member(&team.ctx, None, &workspace_id, "aurora@example.com")
            .await
            .unwrap();
        assert_eq!(removed.email, "aurora@example.com");
        expect_err(
            accounts::remove_member(&team.ctx, None, &workspace_id, "kim@example.com").await,
            "conflict",
            "kim@example.com is the last owner",
        );
        expect_err(
            accounts::remove_member(&team.ctx, None, &workspace_id, "aurora@example.com").await,
            "not_found",
            "member `aurora@example.com`",
        );

        // Removing a member removes their API keys and agents.
        let key = accounts::create_api_key(&store, &workspace_id, "duan@example.com", None)
            .await
            .unwrap();
        accounts::remove_member(&team.ctx, None, &workspace_id, "duan@example.com")
            .await
            .unwrap();
        expect_err(
            accounts::authenticate_api_key(&store, &key.secret).await,
            "unauthorized",
            "invalid or revoked API key",
        );
        expect_err(
            agents::get_agent(&store, &team.ctx.presence, &workspace_id, "duan-bot").await,
            "not_found",
            "agent `duan-bot`",
        );
        let owners: Vec<String> = accounts::list_members(&store, &workspace_id)
            .await
            .unwrap()
            .into_iter()
            .map(|member| member.email)
            .collect();
        assert_eq!(owners, ["kim@example.com"]);
    }
);

backend_test!(
    /// Two owners removing each other at the same time: one removal wins, the other is
    /// refused, and the workspace keeps an owner.
    async fn concurrent_owner_removals_keep_one_owner(store) {
        for round in 0..10 {
            let workspace = accounts::create_workspace(&store, &format!("ws-{round}"))
                .await
                .unwrap();
            for email in ["a@example.com", "b@example.com"] {
                accounts::add_member(&store, &workspace.id, email, None, Role::Owner)
                    .await
                    .unwrap();
            }
            let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
            let handles: Vec<_> = ["a@example.com", "b@example.com"]
                .into_iter()
                .map(|email| {
                    let ctx = Ctx::new(store.clone(), Settings::default());
                    let barrier = barrier.clone();
                    let workspace_id = workspace.id.clone();
                    tokio::spawn(async move {
                        barrier.wait().await;
                        accounts::remove_member(&ctx, None, &workspace_id, email).await
                    })
                })
                .collect();
            let mut n_removed = 0;
            for handle in handles {
                match handle.await.unwrap() {
                    Ok(_) => n_removed += 1,
                    Err(err) => assert_eq!(err.code(), "conflict", "{err}"),
                }
            }
            assert_eq!(n_removed, 1, "round {round} on {:?}", store.backend());
            let owners = accounts::list_members(&store, &workspace.id).await.unwrap();
            assert_eq!(owners.len(), 1);
        }
    }
);

// ---------------------------------------------------------------- API keys

backend_test!(
    async fn api_keys_are_prefixed_and_only_their_hash_is_stored(store) {
        let team = Team::new(&store).await;
        let created =
            accounts::create_api_key(&store, &team.workspace_id, "aurora@example.com", Some("cli"))
                .await
                .unwrap();
        let secret = created.secret.clone();
        assert!(secret.starts_with("ahk_"), "{secret}");
        assert_eq!(secret.len(), 4 + 64);

        let rows: Vec<ApiKey> = store
            .read(async |db| {
                db!(db, |conn| api_keys::table
                    .select(ApiKey::as_select())
                    .load(conn)
                    .await)
                .map_err(StoreError::from)
            })
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.token_hash, token::hash(&secret));
        assert_eq!(row.token_prefix, secret[..12]);
        assert_eq!(row.name, "cli");
        // Neither the secret nor its random part is in any column.
        let stored = format!("{row:?}");
        assert!(!stored.contains(&secret[4..]), "{stored}");
        assert!(!stored.contains(&secret[12..]), "{stored}");
        let listed = accounts::list_api_keys(&store, &team.workspace_id)
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert!(!format!("{listed:?}").contains(&secret[12..]));

        let second = accounts::create_api_key(&store, &team.workspace_id, "aurora@example.com", None)
            .await
            .unwrap();
        assert_ne!(second.secret, secret);
        assert_eq!(second.key.name, "default");
        expect_err(
            accounts::create_api_key(&store, &team.workspace_id, "ghost@example.com", None).await,
            "not_found",
            "member `ghost@example.com`",
        );
    }
);

backend_test!(
    async fn api_keys_authenticate_until_revoked_or_expired(store) {
        let team = Team::new(&store).await;
        let created = accounts::create_api_key(&store, &team.workspace_id, "duan@example.com", None)
            .await
            .unwrap();
        assert_eq!(created.key.last_used_at, None);
        let before = now_ms();
        let member = accounts::authenticate_api_key(&store, &created.secret)
            .await
            .unwrap();
        assert_eq!(member.email, "duan@example.com");
        assert_eq!(member.role, Role::Member);
        assert_eq!(member.workspace_id, team.workspace_id);
        assert_eq!(member.member_id, team.duan.member_id());

        let listed = accounts::list_api_keys(&store, &team.workspace_id)
            .await
            .unwrap();
        let last_used = listed[0].last_used_at.expect("last use is recorded");
        assert!(last_used >= before, "{last_used} < {before}");

        // Garbage, a well-shaped unknown key and an agent token are all unauthorized.
        let unknown = format!("ahk_{}", "0".repeat(64));
        let agent_token = token::generate(token::AGENT_TOKEN_PREFIX).secret;
        for garbage in ["", "ahk_", "Bearer nonsense", &unknown, &agent_token, &created.secret[1..]] {
            expect_err(
                accounts::authenticate_api_key(&store, garbage).await,
                "unauthorized",
                "invalid or revoked API key",
            );
        }

        accounts::revoke_api_key(&store, &team.workspace_id, &created.key.id)
            .await
            .unwrap();
        expect_err(
            accounts::authenticate_api_key(&store, &created.secret).await,
            "unauthorized",
            "invalid or revoked API key",
        );
        expect_err(
            accounts::revoke_api_key(&store, &team.workspace_id, &created.key.id).await,
            "not_found",
            "active API key",
        );

        // An expired key is refused too.
        let expiring = accounts::create_api_key(&store, &team.workspace_id, "duan@example.com", None)
            .await
            .unwrap();
        accounts::authenticate_api_key(&store, &expiring.secret)
            .await
            .unwrap();
        let key_id = expiring.key.id.clone();
        store
            .transaction(async |db| {
                db!(db, |conn| diesel::update(api_keys::table.find(&key_id))
                    .set(api_keys::expires_at.eq(now_ms() - 1))
                    .execute(conn)
                    .await)?;
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
        expect_err(
            accounts::authenticate_api_key(&store, &expiring.secret).await,
            "unauthorized",
            "invalid or revoked API key",
        );
    }
);

// ---------------------------------------------------------------- agents

backend_test!(
    async fn agents_are_registered_with_a_hashed_token(store) {
        let team = Team::new(&store).await;
        let capabilities = vec!["docs".to_string(), "python".to_string()];
        let created = agents::create_agent(
            &store,
            NewAgent {
                workspace_id: &team.workspace_id,
                name: "scribe",
                owner: "DUAN@example.com",
                capabilities: &capabilities,
                max_concurrency: 2,
            },
        )
        .await
        .unwrap();
        assert!(created.token.starts_with("aha_"), "{}", created.token);
        assert_eq!(created.token.len(), 4 + 64);
        assert_eq!(created.agent.owner_member_id, team.duan.member_id());
        assert_eq!(created.agent.capability_list(), capabilities);
        assert_eq!(created.agent.max_concurrency, 2);

        let agent_id = created.agent.id.clone();
        let tokens: Vec<AgentToken> = store
            .read(async |db| {
                db!(db, |conn| agent_tokens::table
                    .filter(agent_tokens::agent_id.eq(&agent_id))
                    .select(AgentToken::as_select())
                    .load(conn)
                    .await)
                .map_err(StoreError::from)
            })
            .await
            .unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].token_hash, token::hash(&created.token));
        assert!(!format!("{tokens:?}").contains(&created.token[12..]));

        let actor = agents::authenticate_token(&store, &created.token)
            .await
            .unwrap();
        assert_eq!(actor.agent_id, created.agent.id);
        assert_eq!(actor.agent_name, "scribe");
        assert_eq!(actor.workspace_id, team.workspace_id);
        assert_eq!(actor.member_id, team.duan.member_id(), "bound to its owner");
        assert!(agents::token_is_active(&store, &created.token).await.unwrap());

        let view = agents::get_agent(&store, &team.ctx.presence, &team.workspace_id, "scribe")
            .await
            .unwrap();
        assert_eq!(view.owner_email, "duan@example.com");
        assert!(!view.online);
        let names: Vec<String> = agents::list_agents(&store, &team.ctx.presence, &team.workspace_id)
            .await
            .unwrap()
            .into_iter()
            .map(|view| view.agent.name)
            .collect();
        assert_eq!(names, ["duan-bot", "min", "scribe"]);

        for garbage in ["", "aha_", &created.token[1..], &format!("aha_{}", "f".repeat(64))] {
            expect_err(
                agents::authenticate_token(&store, garbage).await,
                "unauthorized",
                "invalid or revoked agent token",
            );
        }
    }
);

backend_test!(
    async fn agent_names_owners_and_limits_are_checked(store) {
        let team = Team::new(&store).await;
        let no_caps: Vec<String> = Vec::new();
        let new = |name: &'static str, owner: &'static str, max_concurrency: u32| NewAgent {
            workspace_id: &team.workspace_id,
            name,
            owner,
            capabilities: &no_caps,
            max_concurrency,
        };
        let long_name: &'static str = "x".repeat(65).leak();
        for bad in ["", "   ", "has space", "émile", "a/b", long_name] {
            let err = expect_err(
                agents::create_agent(&store, new(bad, "aurora@example.com", 1)).await,
                "invalid",
                "must be 1-64 letters",
            );
            assert!(
                matches!(&err, agenthub::error::Error::Invalid { field: Some(field), .. } if field == "name"),
                "{err:?}"
            );
        }
        for bad_max in [0, 1025] {
            expect_err(
                agents::create_agent(&store, new("ok-name", "aurora@example.com", bad_max)).await,
                "invalid",
                "max concurrency must be between 1 and 1024",
            );
        }
        expect_err(
            agents::create_agent(&store, new("min", "duan@example.com", 1)).await,
            "conflict",
            "an agent named `min` already exists",
        );
        expect_err(
            agents::create_agent(&store, new("ghost-bot", "ghost@example.com", 1)).await,
            "not_found",
            "member `ghost@example.com`",
        );
        agents::create_agent(&store, new("x.y_z-1", "aurora@example.com", 1024))
            .await
            .unwrap();
    }
);

backend_test!(
    async fn revoked_agent_tokens_no_longer_authenticate(store) {
        let team = Team::new(&store).await;
        let no_caps: Vec<String> = Vec::new();
        let created = agents::create_agent(
            &store,
            NewAgent {
                workspace_id: &team.workspace_id,
                name: "scribe",
                owner: "aurora@example.com",
                capabilities: &no_caps,
                max_concurrency: 1,
            },
        )
        .await
        .unwrap();
        agents::authenticate_token(&store, &created.token)
            .await
            .unwrap();

        let (agent, n_revoked, reissued) =
            agents::revoke_tokens(&store, &team.workspace_id, "scribe", true)
                .await
                .unwrap();
        assert_eq!((agent.id.as_str(), n_revoked), (created.agent.id.as_str(), 1));
        expect_err(
            agents::authenticate_token(&store, &created.token).await,
            "unauthorized",
            "invalid or revoked agent token",
        );
        assert!(!agents::token_is_active(&store, &created.token).await.unwrap());
        let reissued = reissued.expect("a fresh token");
        assert!(reissued.starts_with("aha_"));
        assert_eq!(
            agents::authenticate_token(&store, &reissued)
                .await
                .unwrap()
                .agent_id,
            created.agent.id
        );

        let (_, n_revoked, none) = agents::revoke_tokens(&store, &team.workspace_id, "scribe", false)
            .await
            .unwrap();
        assert_eq!((n_revoked, none), (1, None));
        expect_err(
            agents::authenticate_token(&store, &reissued).await,
            "unauthorized",
            "invalid or revoked agent token",
        );
        expect_err(
            agents::revoke_tokens(&store, &team.workspace_id, "ghost", false).await,
            "not_found",
            "agent `ghost`",
        );
    }
);

// ---------------------------------------------------------------- workspace isolation

backend_test!(
    /// Everything of workspace B, as seen by an actor of workspace A, does not exist.
    async fn an_actor_of_one_workspace_cannot_reach_another(store) {
        let team_a = Team::new(&store).await;
        let team_b = Team::in_workspace(&store, "globex").await;
        let ctx_a = &team_a.ctx;

        // In B: a task awaiting review, a blocked step with a question, a ready step and an
        // availability request.
        let report = team_b.create(report_task()).await;
        team_b.run_step(&team_b.min, &step_id(&report, "draft")).await;
        let review_b = step_id(&report, "review");
        assert_eq!(team_b.run_step(&team_b.min, &review_b).await, "awaiting_approval");
        let approval_b = approvals::inbox(&team_b.ctx, &team_b.duan)
            .await
            .unwrap()
            .approvals[0]
            .0
            .id
            .clone();
        let asking = team_b
            .create(new_task("Ask", vec![new_step("ask", &["min"], &[])]))
            .await;
        let ask_b = step_id(&asking, "ask");
        tasks::claim_step(&team_b.ctx, &team_b.min, &ask_b).await.unwrap();
        let question_b = approvals::ask(&team_b.ctx, &team_b.min, &ask_b, 1, "Which quarter?", &[])
            .await
            .unwrap();
        let ready = team_b
            .create(new_task("Ready", vec![new_step("todo", &["min", "duan-bot"], &[])]))
            .await;
        let ready_b = step_id(&ready, "todo");
        let availability_b = approvals::request_availability(
            &team_b.ctx,
            &team_b.aurora,
            "min",
            "Free this week?",
            None,
        )
        .await
        .unwrap();
        let key_b = accounts::create_api_key(&store, &team_b.workspace_id, "duan@example.com", None)
            .await
            .unwrap();

        let admin_a = &team_a.aurora;
        let agent_a = Actor::Agent(team_a.duan_bot.clone());
        let task_b = report.task.id.as_str();
        for actor in [admin_a, &team_a.duan, &agent_a] {
            expect_err(tasks::get_task(ctx_a, actor, task_b).await, "not_found", task_b);
            expect_err(tasks::get_step(ctx_a, actor, &ready_b).await, "not_found", "step");
            expect_err(tasks::history(ctx_a, actor, task_b).await, "not_found", "task");
            expect_err(tasks::step_logs(ctx_a, actor, &ask_b).await, "not_found", "step");
            assert!(tasks::list_tasks(ctx_a, actor, &tasks::TaskFilter::newest(100)).await.unwrap().is_empty());
            let inbox = approvals::inbox(ctx_a, actor).await.unwrap();
            assert!(inbox.approvals.is_empty() && inbox.questions.is_empty());
            for which in [ApprovalRef::Id(&approval_b), ApprovalRef::Step(&review_b, 1)] {
                expect_err(
                    approvals::decide(ctx_a, actor, which, approvals::Verdict::new(Decision::Approve, None)).await,
                    "not_found",
                    "",
                );
            }
            expect_err(
                approvals::answer(ctx_a, actor, &question_b, "Q3").await,
                "not_found",
                "input request",
            );
            expect_err(
                tasks::set_task_status(ctx_a, actor, task_b, TaskAction::Cancel).await,
                "not_found",
                "task",
            );
            let change = WorkflowChange {
                reason: "hijack".into(),
                operations: vec![WorkflowOp::RemoveStep {
                    step: "review".into(),
                }],
            };
            expect_err(
                tasks::change_workflow(ctx_a, actor, task_b, change).await,
                "not_found",
                "task",
            );
            expect_err(
                approvals::request_availability(ctx_a, actor, &team_b.min.agent_id, "Free?", None)
                    .await,
                "not_found",
                "agent",
            );
        }

        // A's agents cannot touch B's steps (same agent names, different workspace).
        for agent in [&team_a.min, &team_a.duan_bot] {
            expect_err(tasks::claim_step(ctx_a, agent, &ready_b).await, "not_found", "step");
            expect_err(tasks::progress_step(ctx_a, agent, &ask_b, 1, None, None).await, "not_found", "step");
            expect_err(submit(ctx_a, agent, &ask_b, 1).await, "not_found", "step");
            expect_err(
                tasks::fail_step(ctx_a, agent, &ask_b, 1, "no", false).await,
                "not_found",
                "step",
            );
            expect_err(
                tasks::log_step(ctx_a, agent, &ask_b, 1, LogStream::Info, "hi").await,
                "not_found",
                "step",
            );
            expect_err(
                approvals::ask(ctx_a, agent, &ready_b, 1, "?", &[]).await,
                "not_found",
                "step",
            );
            expect_err(
                approvals::respond_availability(ctx_a, agent, &availability_b.id, true, None).await,
                "not_found",
                "availability request",
            );
        }

        // B's agents, members and keys are unknown in A.
        let presence = &team_a.ctx.presence;
        expect_err(
            agents::get_agent(&store, presence, &team_a.workspace_id, &team_b.min.agent_id).await,
            "not_found",
            "agent",
        );
        expect_err(
            agents::revoke_tokens(&store, &team_a.workspace_id, &team_b.min.agent_id, false).await,
            "not_found",
            "agent",
        );
        expect_err(
            accounts::find_member(&store, &team_a.workspace_id, team_b.duan.member_id()).await,
            "not_found",
            "member",
        );
        expect_err(
            accounts::remove_member(&team_a.ctx, None, &team_a.workspace_id, team_b.duan.member_id()).await,
            "not_found",
            "member",
        );
        expect_err(
            accounts::revoke_api_key(&store, &team_a.workspace_id, &key_b.key.id).await,
            "not_found",
            "API key",
        );
        accounts::authenticate_api_key(&store, &key_b.secret)
            .await
            .unwrap();

        // Nor can a task of A name B's agents or members.
        let foreign_assignee = new_task(
            "Foreign",
            vec![new_step("x", &[team_b.min.agent_id.as_str()], &[])],
        );
        expect_err(
            tasks::create_task(ctx_a, admin_a, foreign_assignee).await,
            "invalid",
            "is not an agent of this workspace",
        );
        let foreign_approver = new_task(
            "Foreign",
            vec![NewStep {
                approval_level: 1,
                approvers: vec![team_b.duan.member_id().to_string()],
                ..new_step("x", &["min"], &[])
            }],
        );
        expect_err(
            tasks::create_task(ctx_a, admin_a, foreign_approver).await,
            "invalid",
            "is not a member of this workspace",
        );

        // B is untouched.
        assert_eq!(team_b.step(&ready_b).await.status, "ready");
        assert_eq!(team_b.step(&review_b).await.status, "awaiting_approval");
        assert_eq!(team_b.step(&ask_b).await.status, "blocked");
        let inbox_b = approvals::inbox(&team_b.ctx, &team_b.duan).await.unwrap();
        assert_eq!(inbox_b.approvals.len(), 1);
        assert_eq!(team_b.task(task_b).await.task.status, "active");
    }
);
