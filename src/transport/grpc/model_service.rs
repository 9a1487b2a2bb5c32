use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::error::ServingError;
use crate::proto::tensorflow::error::Code;
use crate::proto::tensorflow::serving::model_service_server::ModelService;
use crate::proto::tensorflow::serving::model_version_status::State;
use crate::proto::tensorflow::serving::{
    GetModelStatusRequest, GetModelStatusResponse, ModelVersionStatus, ReloadConfigRequest, ReloadConfigResponse,
    StatusProto,
};
use crate::config::model_config;
use crate::repository::{ManagerHandle, ModelRepository, VersionRequest, VersionState};
use crate::servable::RequestError;

use super::model_spec;

pub struct ModelServiceImpl {
    repository: Arc<ModelRepository>,
    manager: ManagerHandle,
}

impl ModelServiceImpl {
    pub fn new(repository: Arc<ModelRepository>, manager: ManagerHandle) -> Self {
        Self { repository, manager }
    }

    fn status_inner(&self, request: GetModelStatusRequest) -> Result<GetModelStatusResponse, ServingError> {
        let (name, version) = model_spec::parse(request.model_spec.as_ref())?;
        let version = match version {
            VersionRequest::Latest => None,
            VersionRequest::Specific(v) => Some(v),
            VersionRequest::Label(_) => {
                return Err(RequestError::Invalid("GetModelStatus takes a version number, not a version label".into()).into());
            }
        };
        let statuses = self.repository.status(name, version)?;
        Ok(GetModelStatusResponse {
            model_version_status: statuses
                .into_iter()
                .map(|s| ModelVersionStatus {
                    version: s.version,
                    state: state_code(s.state) as i32,
                    status: Some(match s.error {
                        None => StatusProto { error_code: Code::Ok as i32, error_message: String::new() },
                        Some(message) => StatusProto { error_code: Code::Unknown as i32, error_message: message },
                    }),
                })
                .collect(),
        })
    }
}

fn state_code(state: VersionState) -> State {
    match state {
        VersionState::Start => State::Start,
        VersionState::Loading => State::Loading,
        VersionState::Available => State::Available,
        VersionState::Unloading => State::Unloading,
        VersionState::End => State::End,
    }
}

#[tonic::async_trait]
impl ModelService for ModelServiceImpl {
    async fn get_model_status(
        &self,
        request: Request<GetModelStatusRequest>,
    ) -> Result<Response<GetModelStatusResponse>, Status> {
        self.status_inner(request.into_inner()).map(Response::new).map_err(Status::from)
    }

    /// Applies the new model list and answers once every model in it has an available version,
    /// or with the reasons some do not (the new config stays applied, as in TF Serving).
    async fn handle_reload_config_request(
        &self,
        request: Request<ReloadConfigRequest>,
    ) -> Result<Response<ReloadConfigResponse>, Status> {
        let config = request.into_inner().config.unwrap_or_default();
        let models = model_config::from_proto(config).map_err(|e| Status::invalid_argument(e.to_string()))?;
        match self.manager.reload(models).await {
            Ok(()) => Ok(Response::new(ReloadConfigResponse {
                status: Some(StatusProto { error_code: Code::Ok as i32, error_message: String::new() }),
                metric: Vec::new(),
            })),
            Err(message) => Err(Status::failed_precondition(crate::error::truncate_message(message))),
        }
    }
}
