//! Free time for a meeting's `availability.requested`, from the person's own calendar:
//! the working hours of `[calendar]` in its UTC offset, on Monday to Friday, less the
//! busy events of an ICS file or URL read on this machine. Answered as intervals in
//! that offset. Without `[calendar]` agentd answers nothing and the person answers
//! from the hub's inbox.
//!
//! Events are read as given: `Z` times as UTC, floating times and times with a `TZID`
//! in the configured offset, all-day events as the whole local day; cancelled and
//! transparent (free) events do not count, and recurrence rules are not expanded.

use std::str::FromStr;

use agenthub_protocol::{AvailabilityRequested, AvailabilityRespond, ClientFrame, Interval};
use icalendar::{Calendar, CalendarComponent, CalendarDateTime, Component, DatePerhapsTime};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::executor::{Outbound, Reply};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
const MINUTE_MS: i64 = 60 * 1000;

/// `[calendar]` of `config.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CalendarConfig {
    /// An ICS file path, or an `http(s)://` URL, with the person's busy events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ics: Option<String>,
    /// The person's offset from UTC, `+09:00` or `-05:00`.
    pub utc_offset: String,
    /// Working hours in that offset, `09:00-17:00`.
    pub working_hours: String,
}

impl Default for CalendarConfig {
    fn default() -> Self {
        CalendarConfig {
            ics: None,
            utc_offset: "+00:00".into(),
            working_hours: "09:00-17:00".into(),
        }
    }
}

/// The parsed settings of [`CalendarConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    pub offset: UtcOffset,
    /// Minutes after local midnight.
    pub start_minute: i64,
    pub end_minute: i64,
}

impl CalendarConfig {
    /// Checks and parses the offset and working hours.
    pub fn hours(&self) -> Result<Hours> {
        let offset = parse_offset(&self.utc_offset).ok_or_else(|| {
            Error::config(format!(
                "calendar.utc_offset is `{}`; expected an offset like +09:00 or -05:00",
                self.utc_offset
            ))
        })?;
        let bad_hours = || {
            Error::config(format!(
                "calendar.working_hours is `{}`; expected HH:MM-HH:MM, like 09:00-17:00",
                self.working_hours
            ))
        };
        let (start, end) = self.working_hours.split_once('-').ok_or_else(bad_hours)?;
        let start_minute = parse_clock(start).ok_or_else(bad_hours)?;
        let end_minute = parse_clock(end).ok_or_else(bad_hours)?;
        if start_minute >= end_minute {
            return Err(bad_hours());
        }
        Ok(Hours {
            offset,
            start_minute,
            end_minute,
        })
    }
}

fn parse_offset(text: &str) -> Option<UtcOffset> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = rest.split_once(':')?;
    let hours: i8 = hours.parse().ok()?;
    let minutes: i8 = minutes.parse().ok()?;
    if !(0..=18).contains(&hours) || !(0..60).contains(&minutes) {
        return None;
    }
    UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()
}

fn parse_clock(text: &str) -> Option<i64> {
    let (hours, minutes) = text.trim().split_once(':')?;
    let hours: i64 = hours.parse().ok()?;
    let minutes: i64 = minutes.parse().ok()?;
    if !(0..=24).contains(&hours) || !(0..60).contains(&minutes) || hours * 60 + minutes > 24 * 60 {
        return None;
    }
    Some(hours * 60 + minutes)
}

/// Parses an RFC 3339 timestamp into ms since the epoch.
pub fn parse_time(text: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    Some((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// `ms` as RFC 3339 in `offset`.
pub fn format_time(ms: i64, offset: UtcOffset) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|at| at.to_offset(offset))
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The busy spans (ms since the epoch) of the events of an ICS document.
pub fn busy_spans(ics: &str, offset: UtcOffset) -> Result<Vec<(i64, i64)>> {
    let calendar = Calendar::from_str(ics)
        .map_err(|err| Error::other(format!("the calendar is not iCalendar: {err}")))?;
    let offset_ms = i64::from(offset.whole_seconds()) * 1000;
    let to_ms = |at: &DatePerhapsTime| -> Option<i64> {
        match at {
            DatePerhapsTime::DateTime(CalendarDateTime::Utc(utc)) => Some(utc.timestamp_millis()),
            DatePerhapsTime::DateTime(CalendarDateTime::Floating(naive))
            | DatePerhapsTime::DateTime(CalendarDateTime::WithTimezone {
                date_time: naive, ..
            }) => Some(naive.and_utc().timestamp_millis() - offset_ms),
            DatePerhapsTime::Date(date) => {
                Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis() - offset_ms)
            }
        }
    };
    let mut spans = Vec::new();
    for component in &calendar.components {
        let CalendarComponent::Event(event) = component else {
            continue;
        };
        let cancelled = event
            .property_value("STATUS")
            .is_some_and(|status| status.eq_ignore_ascii_case("CANCELLED"));
        let free = event
            .property_value("TRANSP")
            .is_some_and(|transp| transp.eq_ignore_ascii_case("TRANSPARENT"));
        if cancelled || free {
            continue;
        }
        let Some(start) = event.get_start() else {
            continue;
        };
        let Some(from) = to_ms(&start) else {
            continue;
        };
        let to = match event.get_end().as_ref().and_then(to_ms) {
            Some(to) => to,
            // An all-day event without an end lasts its day.
            None if matches!(start, DatePerhapsTime::Date(_)) => from + DAY_MS,
            None => continue,
        };
        if from < to {
            spans.push((from, to));
        }
    }
    Ok(spans)
}

/// The working hours (Monday to Friday, in `hours.offset`) inside the window, less
/// `busy`, sorted.
pub fn free_spans(hours: &Hours, busy: &[(i64, i64)], from: i64, to: i64) -> Vec<(i64, i64)> {
    let offset_ms = i64::from(hours.offset.whole_seconds()) * 1000;
    let first_day = (from + offset_ms).div_euclid(DAY_MS) - 1;
    let last_day = (to + offset_ms).div_euclid(DAY_MS) + 1;
    let mut free = Vec::new();
    for day in first_day..=last_day {
        // 1970-01-01 was a Thursday: Monday = 0.
        if (day + 3).rem_euclid(7) >= 5 {
            continue;
        }
        let local_midnight = day * DAY_MS - offset_ms;
        let start = (local_midnight + hours.start_minute * MINUTE_MS).max(from);
        let end = (local_midnight + hours.end_minute * MINUTE_MS).min(to);
        if start < end {
            free.push((start, end));
        }
    }
    let mut busy: Vec<(i64, i64)> = busy.to_vec();
    busy.sort_unstable();
    let mut result = Vec::new();
    for (start, end) in free {
        let mut cursor = start;
        for (busy_from, busy_to) in &busy {
            if *busy_to <= cursor || *busy_from >= end {
                continue;
            }
            if *busy_from > cursor {
                result.push((cursor, *busy_from));
            }
            cursor = cursor.max(*busy_to);
        }
        if cursor < end {
            result.push((cursor, end));
        }
    }
    result
}

/// Reads the ICS file or URL.
async fn read_ics(location: &str) -> Result<String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        let response = reqwest::get(location)
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|err| Error::other(format!("cannot fetch the calendar {location}: {err}")))?;
        return response
            .text()
            .await
            .map_err(|err| Error::other(format!("cannot read the calendar {location}: {err}")));
    }
    tokio::fs::read_to_string(location)
        .await
        .map_err(|err| Error::other(format!("cannot read the calendar {location}: {err}")))
}

/// The free intervals to answer `request` with.
pub async fn free_intervals(config: &CalendarConfig, window: &Interval) -> Result<Vec<Interval>> {
    let hours = config.hours()?;
    let (Some(from), Some(to)) = (parse_time(&window.from), parse_time(&window.to)) else {
        return Err(Error::other(format!(
            "the hub's window {} to {} is not RFC 3339",
            window.from, window.to
        )));
    };
    let busy = match &config.ics {
        Some(location) => busy_spans(&read_ics(location).await?, hours.offset)?,
        None => Vec::new(),
    };
    Ok(free_spans(&hours, &busy, from, to)
        .into_iter()
        .map(|(start, end)| Interval {
            from: format_time(start, hours.offset),
            to: format_time(end, hours.offset),
        })
        .collect())
}

/// Answers a meeting's request from the calendar through `outbound`; logs what happened.
pub async fn answer(
    config: CalendarConfig,
    request: AvailabilityRequested,
    outbound: mpsc::Sender<Outbound>,
) {
    let Some(window) = &request.window else {
        return;
    };
    let intervals = match free_intervals(&config, window).await {
        Ok(intervals) => intervals,
        Err(err) => {
            tracing::error!(request_id = %request.request_id, error = %err, "cannot read your free time; answer in the hub's inbox");
            return;
        }
    };
    let n_intervals = intervals.len();
    let frame = ClientFrame::AvailabilityRespond(AvailabilityRespond {
        id: 0,
        request_id: request.request_id,
        available: n_intervals > 0,
        note: None,
        intervals: Some(intervals),
    });
    let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
    if outbound
        .send(Outbound::Request {
            frame,
            reply: Some(reply_tx),
        })
        .await
        .is_err()
    {
        return;
    }
    match reply_rx.await {
        Ok(Reply::Ok(_)) => {
            tracing::info!(request_id = %request.request_id, n_intervals, "answered a meeting's availability from the calendar");
        }
        Ok(Reply::Error { code, message }) => {
            tracing::error!(request_id = %request.request_id, code, message, "the hub refused the calendar's answer");
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests;
