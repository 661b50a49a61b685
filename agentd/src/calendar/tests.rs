//! Working hours, offsets and ICS events turned into free intervals.

use super::*;

fn hours(offset: &str, working: &str) -> Hours {
    CalendarConfig {
        ics: None,
        utc_offset: offset.into(),
        working_hours: working.into(),
    }
    .hours()
    .unwrap()
}

fn at(text: &str) -> i64 {
    parse_time(text).unwrap()
}

#[test]
fn working_hours_are_read_in_the_configured_offset() {
    let tokyo = hours("+09:00", "09:00-17:00");
    // Monday 2026-12-07, the whole UTC day.
    let free = free_spans(
        &tokyo,
        &[],
        at("2026-12-07T00:00:00Z"),
        at("2026-12-08T00:00:00Z"),
    );
    assert_eq!(
        free,
        vec![
            (at("2026-12-07T00:00:00Z"), at("2026-12-07T08:00:00Z")),
            // Tuesday 09:00 in Tokyo is Monday 24:00 UTC: outside the window.
        ]
    );
    assert_eq!(
        format_time(free[0].0, tokyo.offset),
        "2026-12-07T09:00:00+09:00"
    );
}

#[test]
fn weekends_are_not_working_days() {
    let utc = hours("+00:00", "09:00-17:00");
    // Saturday and Sunday 2026-12-05/06.
    let free = free_spans(
        &utc,
        &[],
        at("2026-12-05T00:00:00Z"),
        at("2026-12-07T00:00:00Z"),
    );
    assert!(free.is_empty());
}

#[test]
fn busy_events_of_an_ics_file_are_taken_out() {
    let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n\
BEGIN:VEVENT\r\nUID:1\r\nDTSTAMP:20261201T000000Z\r\nDTSTART:20261207T010000Z\r\nDTEND:20261207T020000Z\r\nSUMMARY:busy\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:2\r\nDTSTAMP:20261201T000000Z\r\nDTSTART:20261207T150000\r\nDTEND:20261207T160000\r\nSUMMARY:floating, local\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:3\r\nDTSTAMP:20261201T000000Z\r\nDTSTART:20261207T030000Z\r\nDTEND:20261207T040000Z\r\nTRANSP:TRANSPARENT\r\nSUMMARY:free\r\nEND:VEVENT\r\n\
END:VCALENDAR\r\n";
    let tokyo = hours("+09:00", "09:00-17:00");
    let busy = busy_spans(ics, tokyo.offset).unwrap();
    assert_eq!(
        busy,
        vec![
            (at("2026-12-07T01:00:00Z"), at("2026-12-07T02:00:00Z")),
            (at("2026-12-07T06:00:00Z"), at("2026-12-07T07:00:00Z")),
        ]
    );
    let free = free_spans(
        &tokyo,
        &busy,
        at("2026-12-07T00:00:00Z"),
        at("2026-12-08T00:00:00Z"),
    );
    assert_eq!(
        free,
        vec![
            (at("2026-12-07T00:00:00Z"), at("2026-12-07T01:00:00Z")),
            (at("2026-12-07T02:00:00Z"), at("2026-12-07T06:00:00Z")),
            (at("2026-12-07T07:00:00Z"), at("2026-12-07T08:00:00Z")),
        ]
    );
}

#[test]
fn bad_settings_say_what_is_expected() {
    let bad = CalendarConfig {
        utc_offset: "JST".into(),
        ..CalendarConfig::default()
    };
    assert!(bad.hours().unwrap_err().to_string().contains("+09:00"));
    let inverted = CalendarConfig {
        working_hours: "17:00-09:00".into(),
        ..CalendarConfig::default()
    };
    assert!(
        inverted
            .hours()
            .unwrap_err()
            .to_string()
            .contains("HH:MM-HH:MM")
    );
}
