//! The marketplace as the load generator sees it: users it signed up, tickets for sale, orders
//! waiting for payment; and what each operation does with them.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::client::{Answer, ApiClient, Session};
use crate::mix::Operation;
use crate::recorder::{Outcome, Recorder};

/// Password of every user the load generator signs up.
const PASSWORD: &str = "load-test-1";

#[derive(Debug, Clone)]
struct User {
    email: String,
    session: Session,
}

#[derive(Debug, Clone)]
struct Listed {
    id: String,
    seller: usize,
}

#[derive(Debug, Default)]
struct State {
    users: Vec<User>,
    for_sale: Vec<Listed>,
    /// Every ticket created, for `GET /api/tickets/:id` (bounded).
    known: Vec<String>,
    payable: VecDeque<(String, usize)>,
}

/// What the load generator knows of the marketplace it loads.
#[derive(Debug)]
pub struct Marketplace {
    client: ApiClient,
    run_id: String,
    state: Mutex<State>,
    /// Follow each ticket and order command with a read carrying its consistency token.
    pub measure_visibility: bool,
}

/// How many ticket ids `show` picks among.
const KNOWN_TICKETS: usize = 10_000;

impl Marketplace {
    /// An empty marketplace; [`Marketplace::seed`] fills it.
    pub fn new(client: ApiClient) -> Self {
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        Self { client, run_id, state: Mutex::new(State::default()), measure_visibility: true }
    }

    /// The client the marketplace talks through.
    pub fn client(&self) -> &ApiClient {
        &self.client
    }

    /// Signs up `users` users and puts `tickets` tickets up for sale, `concurrency` requests at
    /// a time, and waits until the last ticket is visible through the query API.
    pub async fn seed(&self, users: usize, tickets: usize, concurrency: usize) -> anyhow::Result<()> {
        let users = users.max(2);
        let signups = futures::stream::iter(0..users)
            .map(|i| async move {
                let email = format!("seed-{}-{i}@load.test", self.run_id);
                let answer = self.client.signup(&email, PASSWORD).await?;
                let session = answer
                    .session
                    .clone()
                    .filter(|_| answer.status == 201)
                    .ok_or_else(|| anyhow::anyhow!("sign-up of {email} answered {}: {}", answer.status, String::from_utf8_lossy(&answer.body)))?;
                anyhow::Ok(User { email, session })
            })
            .buffer_unordered(concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        {
            let mut state = self.state.lock().expect("state lock");
            for user in signups {
                state.users.push(user?);
            }
        }
        let created = futures::stream::iter(0..tickets)
            .map(|i| async move {
                let seller = i % users;
                let session = self.state.lock().expect("state lock").users[seller].session.clone();
                let answer = self.client.create_ticket(&session, &format!("seed {i}"), 10.0 + (i % 90) as f64).await?;
                let id = answer
                    .field("id")
                    .filter(|_| answer.status == 201)
                    .ok_or_else(|| anyhow::anyhow!("POST /api/tickets answered {}: {}", answer.status, String::from_utf8_lossy(&answer.body)))?;
                anyhow::Ok((Listed { id, seller }, answer.consistency_token))
            })
            .buffer_unordered(concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        let mut last_token = None;
        {
            let mut state = self.state.lock().expect("state lock");
            for ticket in created {
                let (listed, token) = ticket?;
                state.known.push(listed.id.clone());
                last_token = token.map(|t| (listed.id.clone(), t));
                state.for_sale.push(listed);
            }
        }
        if let Some((id, token)) = last_token {
            self.client.show_ticket(&id, Some(&token)).await?;
        }
        Ok(())
    }

    /// Users signed up so far.
    pub fn user_count(&self) -> usize {
        self.state.lock().expect("state lock").users.len()
    }

    /// Tickets still for sale as far as the load generator knows.
    pub fn for_sale_count(&self) -> usize {
        self.state.lock().expect("state lock").for_sale.len()
    }

    /// Performs one `operation`, recording its latency from `intended` (the moment the
    /// schedule said to send it, so a slow system cannot hide its queueing).
    pub async fn perform(&self, operation: Operation, intended: Instant, recorder: &Recorder) {
        let result = match operation {
            Operation::Browse => Some(self.client.list_tickets().await),
            Operation::Show => match self.random_known() {
                Some(id) => Some(self.client.show_ticket(&id, None).await),
                None => None,
            },
            Operation::CreateTicket => {
                let (seller, session) = self.random_user();
                let price = 5.0 + fastrand::u32(0..20_000) as f64 / 100.0;
                let answer = self.client.create_ticket(&session, "load test ticket", price).await;
                if let Ok(answer) = &answer
                    && answer.status == 201
                    && let Some(id) = answer.field("id")
                {
                    recorder.record(operation, Outcome::Success, Some(201), intended.elapsed());
                    self.listed(Listed { id: id.clone(), seller });
                    self.check_visibility(answer, &id, None, recorder).await;
                    return;
                }
                Some(answer)
            }
            Operation::UpdateTicket => match self.random_for_sale() {
                Some(listed) => {
                    let session = self.session(listed.seller);
                    let price = 5.0 + fastrand::u32(0..20_000) as f64 / 100.0;
                    let answer = self.client.update_ticket(&session, &listed.id, "load test ticket (edited)", price).await;
                    if let Ok(answer) = &answer
                        && answer.status == 200
                    {
                        recorder.record(operation, Outcome::Success, Some(200), intended.elapsed());
                        self.check_visibility(answer, &listed.id, None, recorder).await;
                        return;
                    }
                    Some(answer)
                }
                None => None,
            },
            Operation::Order => match self.take_for_sale() {
                Some(listed) => {
                    let buyer = self.buyer_other_than(listed.seller);
                    let session = self.session(buyer);
                    let answer = self.client.create_order(&session, &listed.id).await;
                    if let Ok(answer) = &answer
                        && answer.status == 201
                        && let Some(order_id) = answer.field("id")
                    {
                        recorder.record(operation, Outcome::Success, Some(201), intended.elapsed());
                        self.state.lock().expect("state lock").payable.push_back((order_id.clone(), buyer));
                        self.check_visibility(answer, &order_id, Some(&session), recorder).await;
                        return;
                    }
                    Some(answer)
                }
                None => None,
            },
            Operation::Pay => {
                let next = self.state.lock().expect("state lock").payable.pop_front();
                match next {
                    Some((order_id, buyer)) => Some(self.client.pay(&self.session(buyer), &order_id).await),
                    None => None,
                }
            }
            Operation::Signup => {
                let email = format!("load-{}-{}@load.test", self.run_id, uuid::Uuid::new_v4().simple());
                let answer = self.client.signup(&email, PASSWORD).await;
                if let Ok(Answer { status: 201, session: Some(session), .. }) = &answer {
                    self.state.lock().expect("state lock").users.push(User { email, session: session.clone() });
                }
                Some(answer)
            }
            Operation::Signin => {
                let email = {
                    let state = self.state.lock().expect("state lock");
                    state.users[fastrand::usize(..state.users.len())].email.clone()
                };
                Some(self.client.signin(&email, PASSWORD).await)
            }
        };
        match result {
            None => recorder.skip(operation),
            Some(Ok(answer)) => {
                recorder.record(operation, Outcome::of_status(answer.status), Some(answer.status), intended.elapsed())
            }
            Some(Err(_)) => recorder.record(operation, Outcome::Transport, None, intended.elapsed()),
        }
    }

    /// Reads the written ticket (or order, with the buyer's `session`) back with the command's
    /// consistency token: the time from the command's answer to this read's answer is how long
    /// the write took to become visible (plus one request, within the query API's 1–10 ms poll).
    async fn check_visibility(&self, answer: &Answer, id: &str, session: Option<&Session>, recorder: &Recorder) {
        let Some(token) = answer.consistency_token.as_deref().filter(|_| self.measure_visibility) else { return };
        let accepted = Instant::now();
        let read = match session {
            Some(session) => self.client.show_order(session, id, Some(token)).await,
            None => self.client.show_ticket(id, Some(token)).await,
        };
        if let Ok(read) = read {
            recorder.visibility(accepted.elapsed(), read.stale || !read.is_success());
        }
    }

    fn listed(&self, listed: Listed) {
        let mut state = self.state.lock().expect("state lock");
        if state.known.len() < KNOWN_TICKETS {
            state.known.push(listed.id.clone());
        } else {
            let slot = fastrand::usize(..KNOWN_TICKETS);
            state.known[slot] = listed.id.clone();
        }
        state.for_sale.push(listed);
    }

    fn random_known(&self) -> Option<String> {
        let state = self.state.lock().expect("state lock");
        (!state.known.is_empty()).then(|| state.known[fastrand::usize(..state.known.len())].clone())
    }

    fn random_for_sale(&self) -> Option<Listed> {
        let state = self.state.lock().expect("state lock");
        (!state.for_sale.is_empty()).then(|| state.for_sale[fastrand::usize(..state.for_sale.len())].clone())
    }

    fn take_for_sale(&self) -> Option<Listed> {
        let mut state = self.state.lock().expect("state lock");
        (!state.for_sale.is_empty()).then(|| {
            let slot = fastrand::usize(..state.for_sale.len());
            state.for_sale.swap_remove(slot)
        })
    }

    fn random_user(&self) -> (usize, Session) {
        let state = self.state.lock().expect("state lock");
        let index = fastrand::usize(..state.users.len());
        (index, state.users[index].session.clone())
    }

    fn buyer_other_than(&self, seller: usize) -> usize {
        let count = self.state.lock().expect("state lock").users.len();
        (seller + 1 + fastrand::usize(..count - 1)) % count
    }

    fn session(&self, user: usize) -> Session {
        self.state.lock().expect("state lock").users[user].session.clone()
    }
}

/// Runs `operation` back to back on `workers` connections for `duration` (a closed loop: the
/// way to find a path's highest throughput). Returns answers per second and the recorder.
pub async fn saturate(
    marketplace: &Marketplace,
    operation: Operation,
    workers: usize,
    duration: Duration,
) -> (f64, Recorder) {
    let recorder = Recorder::default();
    let started = Instant::now();
    let deadline = started + duration;
    futures::future::join_all((0..workers).map(|_| async {
        while Instant::now() < deadline {
            marketplace.perform(operation, Instant::now(), &recorder).await;
        }
    }))
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let (routes, _, _) = recorder.snapshot();
    let answered = routes.get(&operation).map(|s| s.succeeded + s.rejected + s.failed).unwrap_or(0);
    (answered as f64 / elapsed, recorder)
}
