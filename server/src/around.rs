//! One shape for the node's gRPC layers — the call metrics, the auth guard, the leader's routing:
//! a tower layer whose service hands each call, with a ready inner service, to what the layer
//! does around it ([`Around`]), so each layer is only that.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};

/// What a layer's service answers.
pub type Answer<E> = BoxFuture<'static, Result<Response<Body>, E>>;

/// What a layer does around one call: `inner` is ready and is this call's alone.
pub trait Around: Clone + Send + Sync + 'static {
    fn around<S>(&self, inner: S, req: Request<Body>) -> Answer<S::Error>
    where
        S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
        S::Future: Send + 'static;
}

/// The tower layer of an [`Around`].
#[derive(Clone)]
pub struct AroundLayer<A>(pub A);

impl<S, A: Around> tower::Layer<S> for AroundLayer<A> {
    type Service = Arounded<S, A>;
    fn layer(&self, inner: S) -> Arounded<S, A> {
        Arounded {
            inner,
            around: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Arounded<S, A> {
    inner: S,
    around: A,
}

impl<S, A> tower::Service<Request<Body>> for Arounded<S, A>
where
    A: Around,
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Answer<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The ready service answers this call; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        self.around.around(inner, req)
    }
}
