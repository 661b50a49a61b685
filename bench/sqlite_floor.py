#!/usr/bin/env python3
"""What SQLite alone needs for the rows a W2 step writes, without the hub.

Applies the hub's SQLite migrations (migrations/sqlite) to a fresh database with the
hub's settings (WAL, synchronous=NORMAL, foreign keys on, a checkpoint thread every
250 ms), then runs the statements of N one-step tasks' lives as the hub's writer runs
them on W2 (docs/benchmarks.md, twentieth wave): batches of creations, claims and
submits in one transaction each, every statement prepared once, the event and timeline
rows inserted at the commit sorted as the hub's writer sorts them, the feeds' counters
upserted once per batch. Row for row what the hub writes per step on W2 (measured from a
W2 database): 1 task (and its update), 1 step (and 2 updates), 1 assignee, 1
submission, 1 notification, 15 events of the measured payload sizes, 6 timeline rows, 1
new feed counter; and the reads the hub's writer makes (the assignee's agent, the step
twice, the agent's held steps, the task, the task's steps).

Prints one JSON line: steps per second of the one writer thread, its CPU per step, the
thread's CPU inside the statements per step, and SQLite's own part of it: the CPU inside
the statements less Python's cost around each (calling, converting and binding its
values, fetching), measured by binding each statement's values again to a statement that
reads and writes nothing, timed the same way. Standard library only.

    python3 bench/sqlite_floor.py [--steps 20000] [--batch 10] [--no-reads]
        [--audiences agent,member,task,workspace] [--payload-scale 1.0] [--no-timeline]
        [--no-foreign-keys] [--integer-keys] [--event-frames]
        [--without-rowid TABLE,...] [--schema SQL]

The knobs after the first two ask what a smaller data model would save: event rows for
fewer feeds (`--audiences none`: no event rows), smaller payloads, no timeline rows, no
foreign key checks, integer keys, a feed's events of one transaction in one row, tables
without a rowid, or any schema change run after the migrations.
"""

import argparse
import glob
import json
import os
import random
import re
import sqlite3
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Payload bytes of each event row of a W2 step, by (audience, type), as measured.
EVENTS_CREATE = [
    ("agent", "task.created", 362),
    ("member", "task.created", 235),
    ("task", "task.created", 231),
    ("workspace", "task.created", 235),
    ("agent", "step.ready", 347),
    ("task", "step.ready", 345),
    ("workspace", "step.ready", 349),
]
EVENTS_SUBMIT = [
    ("agent", "step.completed", 162),
    ("member", "step.completed", 163),
    ("task", "step.completed", 159),
    ("workspace", "step.completed", 163),
    ("agent", "task.updated", 260),
    ("member", "task.updated", 261),
    ("task", "task.updated", 257),
    ("workspace", "task.updated", 261),
]


def new_id():
    """A UUID v7 as text, as the hub's ids (time-ordered)."""
    ms = int(time.time() * 1000)
    rand = random.getrandbits(74)
    return "%08x-%04x-7%03x-%04x-%012x" % (
        ms >> 16,
        ms & 0xFFFF,
        rand >> 62,
        0x8000 | ((rand >> 48) & 0x3FFF),
        rand & 0xFFFFFFFFFFFF,
    )


def now_ms():
    return int(time.time() * 1000)


def open_db(path):
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.executescript(
        "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;"
        " PRAGMA busy_timeout = 5000;"
    )
    return conn


# The tables whose rows a step inserts under a key of its own.
KEYED_TABLES = ("tasks", "steps", "timeline", "notifications")


def migrate(conn, integer_keys, without_rowid):
    """The hub's migrations; with `integer_keys`, the keyed tables a step inserts into get
    an INTEGER key (SQLite's rowid, one B-tree per row) instead of a text uuid; the tables
    named in `without_rowid` are rebuilt WITHOUT ROWID (their primary key is the table's
    one B-tree, not an index beside a rowid table)."""
    for up in sorted(glob.glob(os.path.join(ROOT, "migrations", "sqlite", "*", "up.sql"))):
        with open(up) as f:
            sql = f.read()
        if integer_keys:
            for table in KEYED_TABLES:
                sql = re.sub(r"(CREATE TABLE %s \(\s*)id TEXT NOT NULL PRIMARY KEY" % table,
                             r"\1id INTEGER PRIMARY KEY", sql)
        conn.executescript("BEGIN;" + sql + ";COMMIT;")
    for table in without_rowid:
        found = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        if found is None:
            raise SystemExit("--without-rowid: the hub's schema has no table `%s`" % table)
        (create,) = found
        indexes = [row[0] for row in conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
            " AND sql IS NOT NULL", (table,))]
        conn.executescript(
            "PRAGMA foreign_keys = OFF; BEGIN; DROP TABLE %s; %s WITHOUT ROWID; %s; COMMIT;"
            " PRAGMA foreign_keys = ON;" % (table, create, "; ".join(indexes))
        )


def checkpointer(path, stop, big):
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    while not stop.wait(0.25):
        _busy, log, _done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if log >= 1024:
            big.set()
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    conn.close()


class Writer:
    def __init__(self, conn, reads, audiences, payload_scale, with_timeline, integer_keys,
                 frames):
        self.integer_keys = integer_keys
        self.frames = frames
        self.last_key = 0
        self.conn = conn
        self.reads = reads
        self.audiences = audiences
        self.payload_scale = payload_scale
        self.with_timeline = with_timeline
        self.seqs = {}
        self.events = []
        self.timeline = []
        self.touched = set()
        self.in_statements = 0
        self.binds = []

    def key(self):
        """A new row's key in one of KEYED_TABLES."""
        if not self.integer_keys:
            return new_id()
        self.last_key += 1
        return self.last_key

    def x(self, sql, args=()):
        """Runs a statement to its end and returns its rows; the thread's CPU time inside
        it is counted, and its binds kept for the probe (`probe_binds`)."""
        t0 = time.thread_time_ns()
        rows = self.conn.execute(sql, args).fetchall()
        self.in_statements += time.thread_time_ns() - t0
        self.binds.append(args)
        return rows

    def seq(self, audience):
        last = self.seqs.get(audience)
        if last is None:
            rows = self.x(
                "SELECT last_seq FROM audience_seqs WHERE audience_id = ?", (audience,)
            )
            last = rows[0][0] if rows else 0
        self.seqs[audience] = last + 1
        self.touched.add(audience)
        return last + 1

    def events_of(self, table, ws, member, task, agent):
        """The event rows of one of the EVENTS_ tables, each numbered in its feed."""
        feeds = {"agent": agent[0], "member": member, "task": str(task), "workspace": ws}
        for kind, event_type, size in table:
            if kind not in self.audiences:
                continue
            audience = feeds[kind]
            payload = "x" * int(size * self.payload_scale)
            self.events.append(
                (audience, self.seq(audience), ws, kind, event_type, payload, now_ms())
            )

    def line(self, ws, task, step, from_status, to_status, attempt, actor_kind, actor):
        if not self.with_timeline:
            return
        self.timeline.append(
            (self.key(), ws, task, step, from_status, to_status, None, attempt,
             actor_kind, actor, "bench", now_ms())
        )

    def begin(self):
        self.touched = set()
        self.x("BEGIN IMMEDIATE")

    def insert_rows(self, head, width, rows, sizes):
        """`rows` in multi-row inserts of `sizes` rows each, largest first, as the hub's
        writer inserts the rows its group kept."""
        one = "(" + ", ".join("?" * width) + ")"
        at = 0
        for size in sizes:
            while len(rows) - at >= size:
                chunk = rows[at:at + size]
                self.x(head + ", ".join([one] * size), [v for row in chunk for v in row])
                at += size

    def commit(self):
        self.events.sort(key=lambda row: (row[0], row[1]))
        if self.frames:
            # One row per feed per transaction: its events' payloads as one array, keyed
            # by the feed and its first event's number.
            framed = []
            for row in self.events:
                if framed and framed[-1][0] == row[0]:
                    framed[-1][5] += "," + row[5]
                else:
                    framed.append(list(row))
            self.events = [tuple(row) for row in framed]
        self.insert_rows(
            "INSERT INTO events (audience_id, seq, workspace_id, audience_kind,"
            " event_type, payload, created_at) VALUES ",
            7, self.events, (64, 16, 4, 1),
        )
        self.insert_rows(
            "INSERT INTO timeline (id, workspace_id, task_id, step_id, from_status,"
            " to_status, reason, attempt, actor_kind, actor_id, actor_name, created_at)"
            " VALUES ",
            12, self.timeline, (32, 8, 2, 1),
        )
        for audience in sorted(self.touched):
            self.x(
                "INSERT INTO audience_seqs (audience_id, last_seq) VALUES (?, ?)"
                " ON CONFLICT (audience_id) DO UPDATE SET last_seq = excluded.last_seq",
                (audience, self.seqs[audience]),
            )
        self.events.clear()
        self.timeline.clear()
        self.x("COMMIT")

    def create(self, ws, member, agent):
        task, step, now = self.key(), self.key(), now_ms()
        if self.reads:
            self.x("SELECT id, max_concurrency FROM agents WHERE workspace_id = ? AND name = ?",
                   (ws, agent[1]))
        self.x(
            "INSERT INTO tasks (id, workspace_id, title, description, status,"
            " creator_member_id, creator_agent_id, due_at, created_at, updated_at, outcome)"
            " VALUES (?, ?, ?, ?, 'active', ?, NULL, NULL, ?, ?, NULL)",
            (task, ws, "w2-task", "d" * 100, member, now, now),
        )
        self.x(
            "INSERT INTO steps (id, task_id, workspace_id, key, position, title, description,"
            " status, approval_level, executor, input, expected_inputs, expected_outputs,"
            " required_capabilities, result, summary, self_check, files, claimed_by,"
            " lease_until, attempt, rework_comment, started_at, completed_at, input_tokens,"
            " output_tokens, created_at, updated_at, max_attempts, continue_on_failure,"
            " failures, status_reason, skipped_because, progress_percent, progress_message,"
            " result_digest, decision_timeout_ms, on_timeout, kind, estimate_minutes)"
            " VALUES (?, ?, ?, 'a', 0, 'step', '', 'ready', 0, NULL, '{}', NULL, NULL, '[]',"
            " NULL, NULL, NULL, '[]', NULL, NULL, 0, NULL, NULL, NULL, 0, 0, ?, ?, 3, 0, 0,"
            " NULL, NULL, NULL, NULL, NULL, NULL, 'reject', 'task', NULL)",
            (step, task, ws, now, now),
        )
        self.x("INSERT INTO step_assignees (step_id, agent_id, via_member_id) VALUES (?, ?, NULL)",
               (step, agent[0]))
        self.events_of(EVENTS_CREATE, ws, member, task, agent)
        self.line(ws, task, None, None, "active", None, "member", member)
        self.line(ws, task, step, None, "ready", 1, "member", member)
        return (task, step, agent)

    def claim(self, ws, item):
        task, step, agent = item
        if self.reads:
            self.x("SELECT * FROM steps WHERE id = ? AND workspace_id = ?", (step, ws))
            self.x("SELECT count(*) FROM steps WHERE claimed_by = ? AND status IN"
                   " ('claimed', 'running', 'blocked')", (agent[0],))
        self.x(
            "UPDATE steps SET status = 'claimed', claimed_by = ?, lease_until = ?,"
            " attempt = 1, started_at = ?, updated_at = ? WHERE id = ? AND status = 'ready'",
            (agent[0], now_ms() + 60000, now_ms(), now_ms(), step),
        )
        self.line(ws, task, step, "ready", "claimed", 1, "agent", agent[0])

    def submit(self, ws, member, item):
        task, step, agent = item
        now = now_ms()
        if self.reads:
            self.x("SELECT * FROM tasks WHERE id = ?", (task,))
            self.x("SELECT * FROM steps WHERE id = ? AND workspace_id = ?", (step, ws))
        self.x(
            "UPDATE steps SET status = 'done', result = ?, result_digest = ?, lease_until = NULL,"
            " completed_at = ?, updated_at = ? WHERE id = ? AND status = 'claimed'",
            ('{"by":"bench","ok":true}', "sha256:" + "0" * 64, now, now, step),
        )
        if self.reads:
            self.x("SELECT * FROM steps WHERE task_id = ? ORDER BY position", (task,))
        self.x("UPDATE tasks SET status = 'done', outcome = ?, updated_at = ? WHERE id = ?",
               ('{"status":"done"}', now, task))
        self.x(
            "INSERT INTO step_submissions (step_id, attempt, agent_id, result, summary,"
            " self_check, files, outcome, created_at) VALUES (?, 1, ?, ?, NULL, NULL, '[]',"
            " 'done', ?)",
            (step, agent[0], '{"by":"bench","ok":true}', now),
        )
        self.x(
            "INSERT INTO notifications (id, workspace_id, member_id, kind, priority, task_id,"
            " step_id, subject_id, title, body, data, event_seq, created_at, read_at,"
            " resolved_at) VALUES (?, ?, ?, 'task.completed', 'info', ?, NULL, NULL,"
            " 'Task finished: w2-task', '', ?, NULL, ?, NULL, NULL)",
            (self.key(), ws, member, task, '{"outcome":{"status":"done"},"status":"done"}', now),
        )
        self.events_of(EVENTS_SUBMIT, ws, member, task, agent)
        self.line(ws, task, step, "claimed", "submitted", 1, "agent", agent[0])
        self.line(ws, task, step, "submitted", "done", 1, "agent", agent[0])
        self.line(ws, task, None, "active", "done", None, "agent", agent[0])


def probe_binds(conn, binds):
    """The thread's CPU time inside as many statements as `binds` holds, each run with
    those values bound to `SELECT 1 WHERE 0 AND 0 IN (?, ...)` (one `?` per value; none:
    `SELECT 1 WHERE 0`), timed as `Writer.x` times its statements: what Python and the
    call cost around a statement, with next to nothing for SQLite to do."""
    total = 0
    for args in binds:
        sql = "SELECT 1 WHERE 0"
        if args:
            sql += " AND 0 IN (" + ", ".join("?" * len(args)) + ")"
        t0 = time.thread_time_ns()
        conn.execute(sql, args).fetchall()
        total += time.thread_time_ns() - t0
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=10, help="steps' writes per transaction")
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--no-reads", action="store_true", help="the writes alone")
    parser.add_argument("--audiences", default="agent,member,task,workspace",
                        help="the feeds that get event rows (what if fewer copies)")
    parser.add_argument("--payload-scale", type=float, default=1.0,
                        help="event payloads this many times the measured size")
    parser.add_argument("--no-timeline", action="store_true", help="without timeline rows")
    parser.add_argument("--no-foreign-keys", action="store_true",
                        help="foreign keys not checked (the hub checks them)")
    parser.add_argument("--integer-keys", action="store_true",
                        help="INTEGER keys for %s instead of text uuids" % ", ".join(KEYED_TABLES))
    parser.add_argument("--event-frames", action="store_true",
                        help="a feed's events of one transaction stored as one row")
    parser.add_argument("--schema", default="",
                        help="SQL run after the migrations (a schema to try)")
    parser.add_argument("--without-rowid", default="",
                        help="tables (comma-separated) rebuilt WITHOUT ROWID")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="agenthub-floor") as tmp:
        path = os.path.join(tmp, "floor.db")
        conn = open_db(path)
        without_rowid = [t for t in args.without_rowid.split(",") if t]
        migrate(conn, args.integer_keys, without_rowid)
        if args.schema:
            conn.executescript("BEGIN;" + args.schema + ";COMMIT;")
        conn.executescript("PRAGMA wal_autocheckpoint = 0; PRAGMA temp_store = MEMORY;")
        if args.no_foreign_keys:
            conn.execute("PRAGMA foreign_keys = OFF")
        ws, member, now = new_id(), new_id(), now_ms()
        conn.execute("INSERT INTO workspaces (id, name, created_at) VALUES (?, 'bench', ?)",
                     (ws, now))
        conn.execute("INSERT INTO members (id, workspace_id, email, name, role, created_at)"
                     " VALUES (?, ?, 'bench@example.com', 'bench', 'owner', ?)", (member, ws, now))
        agents = []
        for i in range(args.agents):
            agent = (new_id(), "agent%d" % i)
            conn.execute(
                "INSERT INTO agents (id, workspace_id, name, owner_member_id, capabilities,"
                " max_concurrency, last_seen_at, created_at) VALUES (?, ?, ?, ?, '[]', 1024,"
                " NULL, ?)", (agent[0], ws, agent[1], member, now))
            agents.append(agent)
        stop, big = threading.Event(), threading.Event()
        thread = threading.Thread(target=checkpointer, args=(path, stop, big))
        thread.start()

        writer = Writer(conn, not args.no_reads, set(args.audiences.split(",")),
                        args.payload_scale, not args.no_timeline, args.integer_keys,
                        args.event_frames)
        created, claimed = [], []
        made = done = 0
        wall0, cpu0 = time.perf_counter(), time.thread_time()
        while done < args.steps:
            if big.is_set():
                big.clear()
                writer.x("PRAGMA wal_checkpoint(PASSIVE)")
            writer.begin()
            for item in claimed:
                writer.submit(ws, member, item)
            done += len(claimed)
            for item in created:
                writer.claim(ws, item)
            claimed = created
            n = min(args.batch, args.steps - made)
            created = [writer.create(ws, member, agents[(made + i) % len(agents)])
                       for i in range(n)]
            made += n
            writer.commit()
        wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
        statements = len(writer.binds)
        stop.set()
        thread.join()

        # Python's own cost per statement (the call, converting and binding its values,
        # fetching), timed as the statements were: each statement's binds again, bound
        # to a statement that reads nothing and writes nothing.
        python_ns = probe_binds(conn, writer.binds)
        conn.close()

    steps = args.steps
    sqlite_ns = writer.in_statements - python_ns
    print(json.dumps({
        "steps": steps,
        "batch": args.batch,
        "reads": not args.no_reads,
        "audiences": args.audiences,
        "payload_scale": args.payload_scale,
        "timeline": not args.no_timeline,
        "foreign_keys": not args.no_foreign_keys,
        "integer_keys": args.integer_keys,
        "without_rowid": args.without_rowid,
        "schema": args.schema,
        "event_frames": args.event_frames,
        "statements_per_step": round(statements / steps, 1),
        "steps_per_s": round(steps / wall),
        "writer_cpu_us_per_step": round(cpu / steps * 1e6, 1),
        "in_statements_us_per_step": round(writer.in_statements / steps / 1e3, 1),
        "python_us_per_statement": round(python_ns / statements / 1e3, 2),
        "sqlite_cpu_us_per_step": round(sqlite_ns / steps / 1e3, 1),
        "sqlite_steps_per_s_bound": round(steps / (sqlite_ns / 1e9)),
    }))


if __name__ == "__main__":
    main()
