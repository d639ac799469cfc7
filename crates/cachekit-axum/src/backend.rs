//! The session manager behind a trait object, so that the layer and the extractors are not generic
//! over the store type (`Session`, not `Session<Arc<dyn Store>>`, in every handler signature).
//! Every method forwards to the public [`SessionManager`] API.

use async_trait::async_trait;
use cache_core::{Result, Store};
use chrono::{DateTime, Utc};
use sessions::{CreateOptions, NewSession, Session as SessionView, SessionData, SessionManager};

#[async_trait]
pub(crate) trait Backend: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    async fn get(&self, token: &str) -> Result<Option<SessionView>>;
    async fn update(&self, token: &str, patch: &SessionData) -> Result<Option<SessionView>>;
    async fn create(&self, user_id: &str, opts: CreateOptions) -> Result<NewSession>;
    async fn rotate(&self, token: &str) -> Result<Option<NewSession>>;
    async fn delete(&self, token: &str) -> Result<bool>;
    async fn revoke_all(&self, user_id: &str) -> Result<u64>;
    async fn revoke_all_except(&self, user_id: &str, token: &str) -> Result<u64>;
    async fn list(&self, user_id: &str) -> Result<Vec<SessionView>>;
}

#[async_trait]
impl<S: Store> Backend for SessionManager<S> {
    fn now(&self) -> DateTime<Utc> {
        self.clock().now()
    }

    async fn get(&self, token: &str) -> Result<Option<SessionView>> {
        SessionManager::get(self, token).await
    }

    async fn update(&self, token: &str, patch: &SessionData) -> Result<Option<SessionView>> {
        SessionManager::update(self, token, patch).await
    }

    async fn create(&self, user_id: &str, opts: CreateOptions) -> Result<NewSession> {
        SessionManager::create(self, user_id, opts).await
    }

    async fn rotate(&self, token: &str) -> Result<Option<NewSession>> {
        SessionManager::rotate(self, token).await
    }

    async fn delete(&self, token: &str) -> Result<bool> {
        SessionManager::delete(self, token).await
    }

    async fn revoke_all(&self, user_id: &str) -> Result<u64> {
        SessionManager::revoke_all(self, user_id).await
    }

    async fn revoke_all_except(&self, user_id: &str, token: &str) -> Result<u64> {
        SessionManager::revoke_all_except(self, user_id, token).await
    }

    async fn list(&self, user_id: &str) -> Result<Vec<SessionView>> {
        SessionManager::list_user_sessions(self, user_id).await
    }
}
