//! Unit tests of `hub`.

use super::*;

#[test]
fn the_file_name_of_a_download_is_read_and_made_safe() {
    assert_eq!(
        disposition_filename("attachment; filename=\"report.txt\"").as_deref(),
        Some("report.txt")
    );
    assert_eq!(
        disposition_filename(
            "attachment; filename=\"r_sum_.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt"
        )
        .as_deref(),
        Some("résumé.txt")
    );
    assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
    assert_eq!(safe_file_name("report\r\n.txt"), "report__.txt");
    assert_eq!(safe_file_name(".."), "");
    assert_eq!(safe_file_name("a\\b.txt"), "b.txt");
}
