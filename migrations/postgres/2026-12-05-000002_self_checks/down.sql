DROP TABLE workflow_approvals;
DROP TABLE step_checks;
