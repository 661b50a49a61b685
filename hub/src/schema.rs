//! The diesel schema, written by hand to match `migrations/{sqlite,postgres}/*/up.sql`.
//!
//! One schema serves both backends because the migrations use only portable types: ids
//! and JSON are `Text`, timestamps are unix milliseconds in `BigInt`, flags are `Bool`.
//! `hub/tests/it/store.rs` checks that every table and column here exists in both
//! databases, so a migration that is not mirrored here fails a test.

diesel::table! {
    workspaces (id) {
        id -> Text,
        name -> Text,
        created_at -> BigInt,
        /// Default deadline of approvals and questions of new steps (NULL: none).
        decision_timeout_ms -> Nullable<BigInt>,
    }
}

diesel::table! {
    members (id) {
        id -> Text,
        workspace_id -> Text,
        email -> Text,
        name -> Text,
        role -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        workspace_id -> Text,
        member_id -> Text,
        name -> Text,
        token_hash -> Text,
        token_prefix -> Text,
        created_at -> BigInt,
        last_used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
        expires_at -> Nullable<BigInt>,
        /// JSON array of `read`, `write`, `admin`.
        scopes -> Text,
    }
}

diesel::table! {
    agents (id) {
        id -> Text,
        workspace_id -> Text,
        name -> Text,
        owner_member_id -> Text,
        /// JSON array of capability labels.
        capabilities -> Text,
        max_concurrency -> Integer,
        status -> Text,
        last_seen_at -> Nullable<BigInt>,
        auto_approve -> Bool,
        created_at -> BigInt,
    }
}

diesel::table! {
    agent_tokens (id) {
        id -> Text,
        agent_id -> Text,
        token_hash -> Text,
        token_prefix -> Text,
        created_at -> BigInt,
        last_used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    tasks (id) {
        id -> Text,
        workspace_id -> Text,
        title -> Text,
        description -> Text,
        status -> Text,
        creator_member_id -> Nullable<Text>,
        creator_agent_id -> Nullable<Text>,
        due_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        /// JSON object: how the task ended (status, step, reason, by).
        outcome -> Nullable<Text>,
    }
}

diesel::table! {
    steps (id) {
        id -> Text,
        task_id -> Text,
        workspace_id -> Text,
        /// The step's key, unique within its task (`"key"` in SQL; diesel quotes it).
        key -> Text,
        position -> Integer,
        title -> Text,
        description -> Text,
        status -> Text,
        approval_level -> Integer,
        executor -> Nullable<Text>,
        /// JSON document.
        input -> Text,
        expected_inputs -> Nullable<Text>,
        expected_outputs -> Nullable<Text>,
        /// JSON array of capability labels.
        required_capabilities -> Text,
        result -> Nullable<Text>,
        summary -> Nullable<Text>,
        self_check -> Nullable<Text>,
        /// JSON array of file ids.
        files -> Text,
        /// The agent id holding the claim.
        claimed_by -> Nullable<Text>,
        lease_until -> Nullable<BigInt>,
        attempt -> Integer,
        rework_comment -> Nullable<Text>,
        started_at -> Nullable<BigInt>,
        completed_at -> Nullable<BigInt>,
        input_tokens -> BigInt,
        output_tokens -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
        max_attempts -> Integer,
        continue_on_failure -> Bool,
        /// Retryable failures and lease expiries since creation or the last retry.
        failures -> Integer,
        status_reason -> Nullable<Text>,
        /// The failed step whose failure skipped this one.
        skipped_because -> Nullable<Text>,
        progress_percent -> Nullable<Integer>,
        progress_message -> Nullable<Text>,
        /// `sha256:` + hex of the current result's canonical JSON.
        result_digest -> Nullable<Text>,
        /// How long approvals and questions wait (NULL: no deadline).
        decision_timeout_ms -> Nullable<BigInt>,
        /// `reject`, `escalate` or `fail`.
        on_timeout -> Text,
        /// `task` or `meeting` (never claimed; the hub coordinates it).
        kind -> Text,
        /// A rough estimate in minutes (from a plan, or given at create).
        estimate_minutes -> Nullable<Integer>,
    }
}

diesel::table! {
    step_assignees (step_id, agent_id) {
        step_id -> Text,
        agent_id -> Text,
        /// Set when the step was assigned to this agent's member (`member:<email>`).
        via_member_id -> Nullable<Text>,
    }
}

diesel::table! {
    step_approvers (step_id, member_id) {
        step_id -> Text,
        member_id -> Text,
    }
}

diesel::table! {
    step_dependencies (step_id, depends_on) {
        step_id -> Text,
        depends_on -> Text,
    }
}

diesel::table! {
    step_submissions (step_id, attempt) {
        step_id -> Text,
        attempt -> Integer,
        agent_id -> Text,
        result -> Text,
        summary -> Nullable<Text>,
        self_check -> Nullable<Text>,
        files -> Text,
        /// The step status this submit produced.
        outcome -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    approvals (id) {
        id -> Text,
        workspace_id -> Text,
        step_id -> Text,
        attempt -> Integer,
        approver_member_id -> Text,
        decision -> Nullable<Text>,
        comment -> Nullable<Text>,
        decided_at -> Nullable<BigInt>,
        created_at -> BigInt,
        /// When it times out (NULL: never, or already escalated).
        due_at -> Nullable<BigInt>,
        /// Added by an escalation.
        escalated -> Bool,
    }
}

diesel::table! {
    input_requests (id) {
        id -> Text,
        workspace_id -> Text,
        step_id -> Text,
        attempt -> Integer,
        agent_id -> Text,
        /// The member the question is asked of.
        member_id -> Text,
        question -> Text,
        /// JSON array of suggested answers.
        options -> Text,
        answer -> Nullable<Text>,
        answered_by -> Nullable<Text>,
        answered_at -> Nullable<BigInt>,
        created_at -> BigInt,
        /// When it times out (NULL: never, or already escalated).
        due_at -> Nullable<BigInt>,
        escalated_at -> Nullable<BigInt>,
        /// When it closed unanswered.
        expired_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    availability_requests (id) {
        id -> Text,
        workspace_id -> Text,
        task_id -> Nullable<Text>,
        agent_id -> Text,
        asked_by_member_id -> Text,
        question -> Text,
        available -> Nullable<Bool>,
        note -> Nullable<Text>,
        responded_at -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

// Agent tokens whose rows were deleted with their member, for the session watchers.
diesel::table! {
    revoked_agent_tokens (token_hash) {
        token_hash -> Text,
        revoked_at -> BigInt,
    }
}

diesel::table! {
    timeline (id) {
        id -> Text,
        workspace_id -> Text,
        task_id -> Text,
        step_id -> Nullable<Text>,
        from_status -> Nullable<Text>,
        to_status -> Text,
        reason -> Nullable<Text>,
        attempt -> Nullable<Integer>,
        actor_kind -> Text,
        actor_id -> Nullable<Text>,
        actor_name -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    workflow_changes (id) {
        id -> Text,
        workspace_id -> Text,
        task_id -> Text,
        kind -> Text,
        step_id -> Nullable<Text>,
        before_json -> Nullable<Text>,
        after_json -> Nullable<Text>,
        reason -> Text,
        triggered_by -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    /// The durable outbox: one row per audience per event.
    events (audience_id, seq) {
        audience_id -> Text,
        seq -> BigInt,
        workspace_id -> Text,
        /// `agent` or `member`.
        audience_kind -> Text,
        event_type -> Text,
        /// The full JSON frame as sent to the audience.
        payload -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    /// Per-audience gap-free counter, bumped in the transaction that inserts the event.
    audience_seqs (audience_id) {
        audience_id -> Text,
        last_seq -> BigInt,
    }
}

diesel::table! {
    /// How far a feed numbered after the commit (PostgreSQL) is numbered: every
    /// placeholder id up to `floor_id` is numbered or gone; `mark_id` becomes the floor once
    /// every transaction older than `mark_xmax` has ended (`events::staged`).
    staged_floors (audience_id) {
        audience_id -> Text,
        floor_id -> BigInt,
        mark_id -> BigInt,
        mark_xmax -> BigInt,
    }
}

diesel::table! {
    step_logs (id) {
        id -> Text,
        step_id -> Text,
        attempt -> Integer,
        stream -> Text,
        text -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    files (id) {
        id -> Text,
        workspace_id -> Text,
        name -> Text,
        content_type -> Text,
        size_bytes -> BigInt,
        sha256 -> Text,
        /// Relative to the data dir.
        path -> Text,
        uploaded_by -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    usage (id) {
        id -> Text,
        workspace_id -> Text,
        step_id -> Text,
        agent_id -> Text,
        model -> Text,
        input_tokens -> BigInt,
        output_tokens -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    /// A member's inbox: what waits on them (`action`) or what they should know (`info`).
    notifications (id) {
        id -> Text,
        workspace_id -> Text,
        member_id -> Text,
        kind -> Text,
        /// `action` or `info`.
        priority -> Text,
        task_id -> Nullable<Text>,
        step_id -> Nullable<Text>,
        /// The approval, input request, availability request or agent it is about.
        subject_id -> Nullable<Text>,
        title -> Text,
        body -> Text,
        /// JSON object: what a client needs to act.
        data -> Text,
        event_seq -> Nullable<BigInt>,
        created_at -> BigInt,
        read_at -> Nullable<BigInt>,
        resolved_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// One-time sign-in links (`kind` = `link`) and browser sessions (`session`).
    web_sessions (id) {
        id -> Text,
        kind -> Text,
        token_hash -> Text,
        workspace_id -> Text,
        member_id -> Text,
        csrf_token -> Nullable<Text>,
        created_at -> BigInt,
        last_seen_at -> Nullable<BigInt>,
        expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// A task's planning rounds: the agent asked, its proposal, the creator's decision.
    plans (id) {
        id -> Text,
        workspace_id -> Text,
        task_id -> Text,
        round -> Integer,
        status -> Text,
        planner_agent_id -> Text,
        comment -> Nullable<Text>,
        start_steps -> Text,
        steps -> Nullable<Text>,
        note -> Nullable<Text>,
        created_at -> BigInt,
        proposed_at -> Nullable<BigInt>,
        decided_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// An agent's check of a submitted attempt.
    step_checks (step_id, attempt) {
        step_id -> Text,
        attempt -> Integer,
        workspace_id -> Text,
        task_id -> Text,
        agent_id -> Text,
        fits -> Bool,
        reasons -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    /// Workflow changes a check suggested, each waiting for the task's creator.
    workflow_approvals (id) {
        id -> Text,
        workspace_id -> Text,
        task_id -> Text,
        step_id -> Text,
        attempt -> Integer,
        agent_id -> Text,
        approver_member_id -> Text,
        suggestion -> Text,
        status -> Text,
        comment -> Nullable<Text>,
        decided_by -> Nullable<Text>,
        decided_at -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::table! {
    /// Meeting steps: participants' free time intersected into a slot.
    meetings (step_id) {
        step_id -> Text,
        workspace_id -> Text,
        task_id -> Text,
        duration_minutes -> Integer,
        window_from -> BigInt,
        window_to -> BigInt,
        status -> Text,
        slot_from -> Nullable<BigInt>,
        slot_to -> Nullable<BigInt>,
        file_id -> Nullable<Text>,
        confirmed_by -> Nullable<Text>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    /// The participants of a meeting and their free intervals (JSON).
    meeting_participants (id) {
        id -> Text,
        step_id -> Text,
        workspace_id -> Text,
        position -> Integer,
        email -> Text,
        name -> Nullable<Text>,
        member_id -> Nullable<Text>,
        agent_id -> Nullable<Text>,
        intervals -> Nullable<Text>,
        responded_at -> Nullable<BigInt>,
    }
}

diesel::joinable!(members -> workspaces (workspace_id));
diesel::joinable!(api_keys -> workspaces (workspace_id));
diesel::joinable!(api_keys -> members (member_id));
diesel::joinable!(agents -> workspaces (workspace_id));
diesel::joinable!(agents -> members (owner_member_id));
diesel::joinable!(agent_tokens -> agents (agent_id));
diesel::joinable!(tasks -> workspaces (workspace_id));
diesel::table! {
    webhooks (id) {
        id -> Text,
        workspace_id -> Text,
        url -> Text,
        secret -> Text,
        event_types -> Text,
        task_id -> Nullable<Text>,
        description -> Text,
        enabled -> Bool,
        disabled_reason -> Nullable<Text>,
        cursor_seq -> BigInt,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<BigInt>,
        created_by -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        /// Set: an A2A push notification config of `task_id` (the token it sends).
        a2a_token -> Nullable<Text>,
    }
}

diesel::table! {
    /// Agents on the workspace's A2A Agent Card.
    a2a_skills (agent_id) {
        agent_id -> Text,
        workspace_id -> Text,
        description -> Text,
        /// JSON array of example requests.
        examples -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    /// Steps delegated to outside A2A agents, one row per attempt.
    a2a_calls (step_id, attempt) {
        step_id -> Text,
        attempt -> Integer,
        workspace_id -> Text,
        agent_id -> Text,
        agent_card_url -> Text,
        endpoint -> Nullable<Text>,
        remote_task_id -> Nullable<Text>,
        input_request_id -> Nullable<Text>,
        answered_status -> Nullable<Text>,
        follower -> Nullable<Text>,
        follow_until -> BigInt,
        created_at -> BigInt,
        finished_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Text,
        webhook_id -> Text,
        kind -> Text,
        seq -> BigInt,
        event_type -> Text,
        payload -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Nullable<BigInt>,
        first_attempt_at -> Nullable<BigInt>,
        last_attempt_at -> Nullable<BigInt>,
        delivered_at -> Nullable<BigInt>,
        redelivery_of -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> Text,
        delivery_id -> Text,
        attempted_at -> BigInt,
        status_code -> Nullable<Integer>,
        latency_ms -> BigInt,
        error -> Nullable<Text>,
        response_excerpt -> Nullable<Text>,
    }
}

diesel::joinable!(steps -> tasks (task_id));
diesel::joinable!(step_assignees -> steps (step_id));
diesel::joinable!(step_assignees -> agents (agent_id));
diesel::joinable!(step_approvers -> steps (step_id));
diesel::joinable!(step_approvers -> members (member_id));
// step_dependencies also references steps through depends_on; join that one explicitly
// with an aliased steps table (diesel allows one joinable! per pair).
diesel::joinable!(step_dependencies -> steps (step_id));
diesel::joinable!(step_submissions -> steps (step_id));
diesel::joinable!(approvals -> steps (step_id));
diesel::joinable!(approvals -> members (approver_member_id));
diesel::joinable!(input_requests -> steps (step_id));
diesel::joinable!(workflow_changes -> tasks (task_id));
diesel::joinable!(plans -> tasks (task_id));
diesel::joinable!(step_checks -> steps (step_id));
diesel::joinable!(meetings -> steps (step_id));
diesel::joinable!(meeting_participants -> meetings (step_id));
diesel::joinable!(workflow_approvals -> tasks (task_id));
diesel::joinable!(timeline -> tasks (task_id));
diesel::joinable!(step_logs -> steps (step_id));
diesel::joinable!(webhooks -> workspaces (workspace_id));
diesel::joinable!(a2a_skills -> agents (agent_id));
diesel::joinable!(a2a_calls -> steps (step_id));
diesel::joinable!(webhook_deliveries -> webhooks (webhook_id));
diesel::joinable!(webhook_attempts -> webhook_deliveries (delivery_id));

diesel::allow_tables_to_appear_in_same_query!(
    meetings,
    meeting_participants,
    workspaces,
    a2a_skills,
    a2a_calls,
    members,
    api_keys,
    agents,
    agent_tokens,
    tasks,
    steps,
    step_assignees,
    step_approvers,
    step_dependencies,
    step_submissions,
    approvals,
    input_requests,
    availability_requests,
    workflow_changes,
    plans,
    step_checks,
    workflow_approvals,
    timeline,
    revoked_agent_tokens,
    events,
    audience_seqs,
    staged_floors,
    step_logs,
    files,
    usage,
    webhooks,
    webhook_deliveries,
    webhook_attempts,
    notifications,
    web_sessions,
);
