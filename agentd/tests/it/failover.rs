//! A step assigned to a person (`member:<email>`) against the real hub: two `agentd run`
//! machines of the same member, the one holding the step is killed, the lease expiry hands
//! the step to the other, and `agentd status` on each machine says which one holds it.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::hub::Hub;
use crate::support::{Agentd, spawn, text, wait_exit};

const WAIT: Duration = Duration::from_secs(20);

/// `agentd --json status` of `agentd`, run without blocking the runtime.
async fn status_json(agentd: &Agentd) -> Value {
    let mut cmd = tokio::process::Command::from(agentd.command(&["--json", "status"]));
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("agentd status answers within 20 s")
        .expect("run agentd status");
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_assigned_to_a_person_moves_to_their_other_machine_when_one_goes_silent() {
    // A short lease, renewed by the running daemons, expires soon after one is killed.
    let hub = Hub::start_with_lease(1_500).await;
    let (status, desktop) = hub
        .rest
        .call(
            Method::POST,
            "/v1/agents",
            &hub.team.min_key,
            Some(json!({"name": "min-desktop", "max_concurrency": 2})),
        )
        .await;
    assert_eq!(status, 201, "{desktop}");
    let laptop = Agentd::new();
    laptop.login_with(&hub.url, &hub.team.min_token);
    let desk = Agentd::new();
    desk.login_with(&hub.url, desktop["token"].as_str().unwrap());
    let mut laptop_run = spawn(&laptop, &["run", "--no-notify"]);
    let mut desk_run = spawn(&desk, &["run", "--no-notify"]);

    let step_id = hub
        .rest
        .create_step(
            &hub.team.owner_key,
            json!({"title": "Book the room", "assignees": ["member:min@example.com"],
                   "executor": "manual"}),
        )
        .await;
    let step = hub
        .rest
        .wait_step(&hub.team.owner_key, &step_id, WAIT, "claimed", |step| {
            step["status"] == "running" || step["status"] == "claimed"
        })
        .await;
    let mut assignees: Vec<&str> = step["assignees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|agent| agent["name"].as_str().unwrap())
        .collect();
    assignees.sort();
    assert_eq!(assignees, ["min-desktop", "min-laptop"]);
    assert_eq!(step["assigned_members"][0]["email"], "min@example.com");
    let first_holder = step["claimed_by"].as_str().unwrap().to_string();
    let laptop_holds = first_holder != desktop["agent_id"];
    let (survivor, survivor_name, lost_name) = if laptop_holds {
        laptop_run.start_kill().unwrap();
        (&desk, "min-desktop", "min-laptop")
    } else {
        desk_run.start_kill().unwrap();
        (&laptop, "min-laptop", "min-desktop")
    };

    let step = hub
        .rest
        .wait_step(
            &hub.team.owner_key,
            &step_id,
            WAIT,
            "held by the other machine",
            |step| {
                step["attempt"] == 2
                    && ["claimed", "running"].contains(&step["status"].as_str().unwrap_or_default())
            },
        )
        .await;
    assert_ne!(step["claimed_by"], first_holder.as_str(), "{step:#}");

    // The machine that went silent sees, from the hub, which of its siblings holds it.
    let lost = if laptop_holds { &laptop } else { &desk };
    let seen_from_lost = status_json(lost).await;
    assert_eq!(seen_from_lost["running"], false, "{seen_from_lost:#}");
    let others = seen_from_lost["agent"]["other_machines"]
        .as_array()
        .unwrap();
    let sibling = others
        .iter()
        .find(|other| other["name"] == survivor_name)
        .unwrap_or_else(|| panic!("{survivor_name} is listed: {seen_from_lost:#}"));
    assert_eq!(sibling["holds"][0]["step_id"], step_id.as_str());
    assert_eq!(sibling["holds"][0]["title"], "Book the room");
    let human = text(&lost.run(&["status"]).stdout);
    assert!(human.contains("other machines of this member"), "{human}");
    assert!(
        human.contains(&format!("holds {step_id}  Book the room")),
        "{human}"
    );
    // The survivor runs it and says so, once the answer to its claim (sent after the
    // commit the hub's REST view shows) has reached it; it lists the silent machine
    // holding nothing.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen_from_survivor = status_json(survivor).await;
    while seen_from_survivor["daemon"]["steps"][0]["step_id"] != step_id.as_str()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen_from_survivor = status_json(survivor).await;
    }
    assert_eq!(
        seen_from_survivor["daemon"]["steps"][0]["step_id"],
        step_id.as_str(),
        "{seen_from_survivor:#}"
    );
    let silent = seen_from_survivor["agent"]["other_machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|other| other["name"] == lost_name)
        .cloned()
        .unwrap();
    assert_eq!(silent["holds"], json!([]), "{seen_from_survivor:#}");

    let done = survivor.run(&["done", &step_id, "--result", "room 4 booked"]);
    assert!(done.status.success(), "{}", text(&done.stderr));
    let step = hub
        .rest
        .wait_step(&hub.team.owner_key, &step_id, WAIT, "done", |step| {
            step["status"] == "done"
        })
        .await;
    assert_eq!(step["result"]["text"], "room 4 booked");
    for child in [laptop_run, desk_run] {
        let mut child = child;
        let _ = child.start_kill();
        let _ = wait_exit(child).await;
    }
}
