//! Unit tests of `credentials`.

use super::*;

#[test]
fn secrets_are_redacted_in_debug_output() {
    let secret = Secret::new("sk-ant-very-secret");
    assert!(!format!("{secret:?}").contains("very-secret"));
}

#[test]
fn the_file_store_round_trips_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials.toml");
    let credentials = Credentials::new(CredentialStoreKind::File, &file);
    let location = credentials
        .set(SecretName::ClaudeKey, &Secret::new("sk-ant-1"))
        .unwrap();
    assert_eq!(location, Location::File(file.clone()));
    // The environment wins where it is set; this test only runs where it is not.
    if std::env::var("ANTHROPIC_API_KEY").is_err() {
        let (secret, found) = credentials.get(SecretName::ClaudeKey).unwrap().unwrap();
        assert_eq!(secret.expose(), "sk-ant-1");
        assert_eq!(found, Location::File(file.clone()));
    }
    assert_eq!(
        credentials.delete(SecretName::ClaudeKey).unwrap(),
        vec![Location::File(file)]
    );
}

#[cfg(unix)]
#[test]
fn a_group_readable_credentials_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials.toml");
    std::fs::write(&file, "agent_token = \"aha_x\"\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let credentials = Credentials::new(CredentialStoreKind::File, &file);
    let err = credentials.read_file().unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
}
