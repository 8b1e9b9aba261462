use super::*;
use crate::config::ConfirmScope;

fn program(pid: u32, exe: &str) -> Program {
    Program {
        pid,
        started: u64::from(pid),
        uid: 1000,
        exe: exe.into(),
        sha256: "00".repeat(32),
        script: None,
        cmdline: exe.into(),
        parents: Vec::new(),
    }
}

const PROGRAM: Confirm = Confirm {
    scope: ConfirmScope::Program,
    lasts: Duration::from_secs(3600),
    timeout: Duration::from_secs(60),
};
const PROCESS: Confirm = Confirm {
    scope: ConfirmScope::Process,
    ..PROGRAM
};

/// `role` asked for under `confirm`, with no desktop to ask on.
fn asked<'a>(role: &'a str, confirm: &'a Confirm) -> Asked<'a> {
    Asked {
        role,
        account: Some("222222222222"),
        confirm,
        desktop: false,
    }
}

/// Asks without a desktop, and answers question `id` from the "CLI" once asked.
async fn admit_answered(
    approvals: &Arc<Approvals>,
    program: Program,
    confirm: &'static Confirm,
    allow: bool,
) -> Result<(), Refusal> {
    let asking = {
        let approvals = approvals.clone();
        tokio::spawn(async move { approvals.admit(&asked("prod", confirm), program).await })
    };
    while approvals.pending().is_empty() {
        tokio::task::yield_now().await;
    }
    let id = approvals.pending()[0].id;
    approvals.answer(id, allow, By::Cli).expect("answered");
    asking.await.expect("joined")
}

#[tokio::test(start_paused = true)]
async fn an_allowed_program_is_let_through_without_asking_again_until_it_lapses() {
    let approvals = Approvals::new();
    let python = program(10, "/usr/bin/python3");
    let scope = &PROGRAM;
    assert_eq!(
        admit_answered(&approvals, python.clone(), scope, true).await,
        Ok(())
    );
    // Another process of the same program: no question.
    let again = approvals
        .admit(&asked("prod", scope), program(11, "/usr/bin/python3"))
        .await;
    assert_eq!(again, Ok(()));
    assert!(approvals.pending().is_empty());
    let decided = approvals.decided();
    assert_eq!(decided.len(), 1);
    assert_eq!(
        (decided[0].decision, decided[0].by),
        ("allow", Some(By::Cli))
    );

    // Another program, or the same one with other content, is asked about.
    let changed = Program {
        sha256: "11".repeat(32),
        ..python.clone()
    };
    for other in [program(12, "/usr/bin/curl"), changed] {
        let refused = approvals.admit(&asked("prod", scope), other).await;
        assert!(matches!(refused, Err(Refusal::Pending(_))), "{refused:?}");
    }
    assert_eq!(approvals.pending().len(), 2);

    tokio::time::sleep(Duration::from_secs(3601)).await;
    let lapsed = approvals.admit(&asked("prod", scope), python).await;
    assert!(matches!(lapsed, Err(Refusal::Pending(_))), "{lapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn each_process_covers_one_process_only() {
    let approvals = Approvals::new();
    let scope = &PROCESS;
    let first = program(10, "/usr/bin/python3");
    assert_eq!(
        admit_answered(&approvals, first.clone(), scope, true).await,
        Ok(())
    );
    assert_eq!(approvals.admit(&asked("prod", scope), first).await, Ok(()));
    let second = approvals
        .admit(&asked("prod", scope), program(11, "/usr/bin/python3"))
        .await;
    assert!(matches!(second, Err(Refusal::Pending(_))), "{second:?}");
}

#[tokio::test(start_paused = true)]
async fn a_denial_refuses_at_once_for_a_while_and_asks_once() {
    let approvals = Approvals::new();
    let scope = &PROGRAM;
    let node = program(20, "/usr/bin/node");
    let denied = admit_answered(&approvals, node.clone(), scope, false).await;
    assert!(
        matches!(&denied, Err(Refusal::NotApproved(m)) if m.contains("denied")),
        "{denied:?}"
    );
    for _ in 0..50 {
        let again = approvals.admit(&asked("prod", scope), node.clone()).await;
        assert!(matches!(again, Err(Refusal::NotApproved(_))), "{again:?}");
    }
    assert!(approvals.pending().is_empty(), "no second question");
    tokio::time::sleep(DENIAL_LASTS).await;
    let asked_again = approvals.admit(&asked("prod", scope), node).await;
    assert!(
        matches!(asked_again, Err(Refusal::Pending(_))),
        "{asked_again:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn requests_join_one_question_which_lapses_unanswered() {
    let approvals = Approvals::new();
    let scope = &PROGRAM;
    let curl = program(30, "/usr/bin/curl");
    for _ in 0..3 {
        let held = approvals.admit(&asked("prod", scope), curl.clone()).await;
        let Err(Refusal::Pending(message)) = held else {
            panic!("{held:?}")
        };
        assert!(message.contains("assumed approve 1"), "{message}");
    }
    assert_eq!(approvals.pending().len(), 1);
    // The same program for another role is another question.
    let other_role = approvals.admit(&asked("audit", scope), curl.clone()).await;
    assert!(matches!(other_role, Err(Refusal::Pending(_))));
    assert_eq!(approvals.pending().len(), 2);

    let waiting = {
        let approvals = approvals.clone();
        let curl = curl.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(59_500)).await;
            approvals.admit(&asked("prod", scope), curl).await
        })
    };
    let lapsed = waiting.await.expect("joined");
    assert!(
        matches!(&lapsed, Err(Refusal::NotApproved(m)) if m.contains("within confirm_timeout")),
        "{lapsed:?}"
    );
    assert!(
        approvals.answer(1, true, By::Cli).is_err(),
        "nothing to answer"
    );
    // The retries still under way end on the 403; a later run is asked again.
    let retried = approvals.admit(&asked("prod", scope), curl.clone()).await;
    assert!(
        matches!(retried, Err(Refusal::NotApproved(_))),
        "{retried:?}"
    );
    tokio::time::sleep(LAPSE_LASTS).await;
    let later = approvals.admit(&asked("prod", scope), curl).await;
    assert!(matches!(later, Err(Refusal::Pending(_))), "{later:?}");
}
