//! The SavedModel reader against a SavedModel TensorFlow wrote (tests/fixtures/savedmodel/
//! make_bundle.py): every variable's dtype, shape and values as TensorFlow reads them back;
//! damaged copies failing with the file and the variable named; the meta graph by tags, its
//! signatures, and the variables serving_default captures bound to the keys TF binds.

mod common;

use std::path::{Path, PathBuf};

use candle_serving::savedmodel::{Bundle, captures, meta_graph};
use candle_serving::tensor::{DType, Dim, TensorData};
use common::*;

fn fixture_dir() -> PathBuf {
    repo_root().join("tests/fixtures/savedmodel/bundle")
}

fn prefix(dir: &Path) -> PathBuf {
    dir.join("variables/variables")
}

#[test]
fn every_variable_matches_what_tensorflow_reads() {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("expected.json")).expect("expected.json")).expect("json");
    let expected = expected.as_object().expect("object");
    let bundle = Bundle::open(&prefix(&fixture_dir())).expect("open");
    assert_eq!(bundle.keys().collect::<Vec<_>>(), expected.keys().map(String::as_str).collect::<Vec<_>>());
    for (key, want) in expected {
        let values = want["values"].as_array().expect("values");
        let shape: Vec<usize> = want["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().expect("dim") as usize).collect();
        if want["dtype"] == "string" {
            let got = bundle.strings(key).expect(key);
            let want: Vec<Vec<u8>> = values.iter().map(|v| v.as_str().expect("str").chars().map(|c| c as u8).collect()).collect();
            assert_eq!(got, want, "{key}");
            continue;
        }
        let tensor = bundle.tensor(key).expect(key);
        assert_eq!(tensor.shape(), shape.as_slice(), "{key}");
        let floats = |v: &serde_json::Value| v.as_f64().expect("number");
        match tensor.data() {
            TensorData::F32(got) => assert_eq!(got, &values.iter().map(|v| floats(v) as f32).collect::<Vec<_>>(), "{key}"),
            TensorData::F64(got) => assert_eq!(got, &values.iter().map(floats).collect::<Vec<_>>(), "{key}"),
            TensorData::BF16(got) => assert_eq!(got.iter().map(|x| x.to_f32()).collect::<Vec<_>>(), values.iter().map(|v| floats(v) as f32).collect::<Vec<_>>(), "{key}"),
            TensorData::I32(got) => assert_eq!(got, &values.iter().map(|v| v.as_i64().expect("int") as i32).collect::<Vec<_>>(), "{key}"),
            TensorData::I64(got) => assert_eq!(got, &values.iter().map(|v| v.as_i64().expect("int")).collect::<Vec<_>>(), "{key}"),
            TensorData::Bool(got) => assert_eq!(got, &values.iter().map(|v| v.as_bool().expect("bool")).collect::<Vec<_>>(), "{key}"),
            other => panic!("{key}: unexpected {:?}", other.dtype()),
        }
        let dtype = match tensor.data() {
            TensorData::F32(_) => "float32",
            TensorData::F64(_) => "float64",
            TensorData::BF16(_) => "bfloat16",
            TensorData::I32(_) => "int32",
            TensorData::I64(_) => "int64",
            TensorData::Bool(_) => "bool",
            _ => "other",
        };
        assert_eq!(want["dtype"], dtype, "{key}");
    }
}

/// A copy of the fixture's variables to damage.
fn copy_fixture() -> PathBuf {
    let dir = temp_dir("bundle");
    std::fs::create_dir_all(dir.join("variables")).expect("mkdir");
    for file in ["variables.index", "variables.data-00000-of-00001"] {
        std::fs::copy(fixture_dir().join("variables").join(file), dir.join("variables").join(file)).expect("copy");
    }
    dir
}

#[test]
fn damage_names_the_file_and_the_variable() {
    // A flipped byte inside the kernel's bytes: only that variable fails, by name.
    let dir = copy_fixture();
    let data = dir.join("variables/variables.data-00000-of-00001");
    let bundle = Bundle::open(&prefix(&fixture_dir())).expect("open");
    let kernel = "kernel/.ATTRIBUTES/VARIABLE_VALUE";
    let original = std::fs::read(&data).expect("read");
    let position = original
        .windows(4)
        .position(|w| w == bundle.tensor(kernel).map(|t| match t.data() { TensorData::F32(v) => v[0].to_le_bytes(), _ => [0; 4] }).expect("kernel"))
        .expect("the kernel's first value in the data file");
    let mut damaged = original.clone();
    damaged[position] ^= 0x01;
    std::fs::write(&data, &damaged).expect("write");
    let bundle = Bundle::open(&prefix(&dir)).expect("the index is intact");
    let err = bundle.tensor(kernel).expect_err("checksum").to_string();
    assert!(err.contains("variables.data-00000-of-00001") && err.contains(kernel) && err.contains("checksum"), "{err}");
    assert!(bundle.tensor("bias/.ATTRIBUTES/VARIABLE_VALUE").is_ok(), "other variables still read");

    // A truncated data file: the variables past the end fail, naming their bytes.
    std::fs::write(&data, &original[..original.len() / 2]).expect("write");
    let bundle = Bundle::open(&prefix(&dir)).expect("open");
    let failures: Vec<String> = bundle.keys().filter_map(|k| bundle.tensor(k).err().map(|e| e.to_string())).collect();
    assert!(failures.iter().any(|e| e.contains("outside the")), "{failures:?}");

    // A damaged index: the table's checksum fails, naming the index file.
    std::fs::write(&data, &original).expect("write");
    let index = dir.join("variables/variables.index");
    let mut bytes = std::fs::read(&index).expect("read");
    bytes[10] ^= 0xff;
    std::fs::write(&index, &bytes).expect("write");
    let err = Bundle::open(&prefix(&dir)).err().expect("bad index").to_string();
    assert!(err.contains("variables.index") && err.contains("checksum"), "{err}");

    // A missing shard.
    std::fs::remove_file(&data).expect("rm");
    std::fs::copy(fixture_dir().join("variables/variables.index"), &index).expect("copy");
    let err = Bundle::open(&prefix(&dir)).err().expect("no shard").to_string();
    assert!(err.contains("variables.data-00000-of-00001"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_meta_graph_by_tags_and_its_signatures() {
    let meta = meta_graph::read(&fixture_dir(), &["serve".to_string()]).expect("serve");
    assert_eq!(meta_graph::signature_names(&meta), ["serving_default"], "the init-op signature is not a client's");
    let sig = &meta_graph::signature(&meta, "serving_default").expect("signature");
    assert_eq!(sig.method_name, "tensorflow/serving/predict");
    assert_eq!((sig.inputs[0].key.as_str(), sig.inputs[0].dtype), ("x", DType::F32));
    assert_eq!(sig.inputs[0].shape, Some(vec![Dim::Dynamic, Dim::Fixed(3)]));
    assert_eq!((sig.outputs[0].key.as_str(), sig.outputs[0].shape.clone()), ("y", Some(vec![Dim::Dynamic, Dim::Fixed(4)])));
    let err = meta_graph::read(&fixture_dir(), &["serve".to_string(), "gpu".to_string()]).expect_err("no such tags").to_string();
    assert!(err.contains("saved_model.pb") && err.contains("\"gpu\"") && err.contains("\"serve\""), "{err}");
}

#[test]
fn captured_variables_bind_to_the_keys_tensorflow_binds() {
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("captures.json")).expect("captures.json")).expect("json");
    let want: Vec<&str> = want["serving_default"].as_array().expect("list").iter().map(|k| k.as_str().expect("key")).collect();
    let meta = meta_graph::read(&fixture_dir(), &["serve".to_string()]).expect("serve");
    let bundle = Bundle::open(&prefix(&fixture_dir())).expect("bundle");
    let (function, bound) = captures(&meta, &bundle, "serving_default").expect("captures");
    assert!(function.contains("signature_wrapper"), "{function}");
    assert_eq!(bound.iter().map(|c| c.checkpoint_key.as_str()).collect::<Vec<_>>(), want);
    assert_eq!(bound.iter().map(|c| c.dtype).collect::<Vec<_>>(), [DType::F32, DType::F64]);
    let graph = meta.graph_def.as_ref().expect("graph");
    for capture in &bound {
        let node = graph.node.iter().find(|n| n.name == capture.handle).expect("the handle is a graph node");
        assert_eq!(node.op, "VarHandleOp", "{}", capture.handle);
        // The bound value has the shape the graph's handle declares.
        let declared = match node.attr.get("shape").and_then(|a| a.value.as_ref()) {
            Some(candle_serving::proto::tensorflow::attr_value::Value::Shape(s)) => s.dim.iter().map(|d| d.size as usize).collect::<Vec<_>>(),
            other => panic!("{}: shape attr {other:?}", capture.handle),
        };
        assert_eq!(bundle.tensor(&capture.checkpoint_key).expect("value").shape(), declared.as_slice(), "{}", capture.handle);
    }
    let err = captures(&meta, &bundle, "nope").expect_err("unknown signature").to_string();
    assert!(err.contains("nope"), "{err}");
}

/// serving_default translated to the engine's graph gives TensorFlow's answer.
#[test]
fn serving_default_runs_on_the_engine_as_tensorflow_computes_it() {
    use candle_serving::engine::Session;
    use candle_serving::engine::onnx::OnnxSession;
    use candle_serving::tensor::HostTensor;
    use prost::Message;

    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("captures.json")).expect("captures.json")).expect("json");
    let rows = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array().expect("rows").iter().flat_map(|r| r.as_array().expect("row").iter().map(|x| x.as_f64().expect("number") as f32)).collect()
    };
    let (x, want) = (rows(&golden["golden"]["x"]), rows(&golden["golden"]["y"]));
    let meta = meta_graph::read(&fixture_dir(), &["serve".to_string()]).expect("serve");
    let bundle = Bundle::open(&prefix(&fixture_dir())).expect("bundle");
    let model = candle_serving::savedmodel::to_onnx(&meta, &bundle, "serving_default").expect("translate");
    let session = OnnxSession::from_bytes(&model.model.encode_to_vec()).expect("engine import");
    assert_eq!(session.inputs()[0].key, "x");
    let outputs = session.run(vec![HostTensor::new(vec![2, 3], TensorData::F32(x)).expect("x")]).expect("run");
    assert_eq!(outputs[0].shape(), &[2, 4]);
    let TensorData::F32(got) = outputs[0].data() else { panic!("{:?}", outputs[0].dtype()) };
    assert_close(got, &want, 1e-6, "serving_default y");
}

/// `<base>/1/` holding the fixture SavedModel (no model.onnx): the server loads and serves it
/// through TF Serving's Predict, with TensorFlow's answer.
#[tokio::test]
async fn a_savedmodel_version_directory_is_served() {
    let base = temp_dir("savedmodel-serve").join("demo");
    std::fs::create_dir_all(base.join("1/variables")).expect("mkdir");
    std::fs::copy(fixture_dir().join("saved_model.pb"), base.join("1/saved_model.pb")).expect("copy");
    for file in ["variables.index", "variables.data-00000-of-00001"] {
        std::fs::copy(fixture_dir().join("variables").join(file), base.join("1/variables").join(file)).expect("copy");
    }
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("captures.json")).expect("captures.json")).expect("json");
    let rows = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array().expect("rows").iter().flat_map(|r| r.as_array().expect("row").iter().map(|x| x.as_f64().expect("number") as f32)).collect()
    };
    let base_flag = format!("--model_base_path={}", base.display());
    let server = Server::start(&["--model_name=demo", &base_flag], "demo").await;
    let mut client = server.predict_client().await;
    let request = predict_request("demo", "x", float_tensor(&[2, 3], rows(&golden["golden"]["x"])));
    let response = client.predict(request).await.expect("predict").into_inner();
    let y = &response.outputs["y"];
    assert_close(&y.float_val, &rows(&golden["golden"]["y"]), 1e-6, "served y");

    // Tags that pick no meta graph fail the load, naming what the SavedModel has.
    let tags = std::process::Command::new(BinaryServer::command(&[]).get_program())
        .args(["--port=0", "--model_name=demo", &base_flag, "--saved_model_tags=serve,tpu"])
        .output()
        .expect("run");
    let logs = String::from_utf8_lossy(&tags.stderr);
    assert!(!tags.status.success(), "{logs}");
    assert!(logs.contains("saved_model.pb") && logs.contains("\"tpu\""), "{logs}");
}

/// A Keras CNN (Conv2D, MaxPool, strided SAME Conv2D, Flatten, Dense softmax) saved by
/// TensorFlow, served from its SavedModel, against TensorFlow's own answer.
#[tokio::test]
async fn a_keras_cnn_savedmodel_answers_as_tensorflow() {
    let fixture = repo_root().join("tests/fixtures/savedmodel/cnn");
    let golden: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture.join("golden.json")).expect("golden")).expect("json");
    let floats = |v: &serde_json::Value| -> Vec<f32> { v.as_array().expect("list").iter().map(|x| x.as_f64().expect("number") as f32).collect() };
    let base = temp_dir("savedmodel-cnn").join("cnn");
    std::fs::create_dir_all(base.join("1/variables")).expect("mkdir");
    std::fs::copy(fixture.join("saved_model.pb"), base.join("1/saved_model.pb")).expect("copy");
    for file in ["variables.index", "variables.data-00000-of-00001"] {
        std::fs::copy(fixture.join("variables").join(file), base.join("1/variables").join(file)).expect("copy");
    }
    let base_flag = format!("--model_base_path={}", base.display());
    let server = Server::start(&["--model_name=cnn", &base_flag], "cnn").await;
    let mut client = server.predict_client().await;
    let input = golden["input"].as_str().expect("input name");
    let request = predict_request("cnn", input, float_tensor(&[2, 28, 28, 1], floats(&golden["images"])));
    let response = client.predict(request).await.expect("predict").into_inner();
    let output = &response.outputs[golden["output"].as_str().expect("output name")];
    assert_close(&output.float_val, &floats(&golden["probabilities"]), 1e-5, "Keras CNN probabilities");
}

/// `<root>/<name>/1/` from `saved_model` and `variables` (the two may come from different
/// fixtures), returning `<root>/<name>`.
fn savedmodel_version(root: &Path, name: &str, saved_model: &Path, variables: &Path) -> PathBuf {
    let version = root.join(name).join("1");
    std::fs::create_dir_all(version.join("variables")).expect("mkdir");
    std::fs::copy(saved_model.join("saved_model.pb"), version.join("saved_model.pb")).expect("copy");
    for file in ["variables.index", "variables.data-00000-of-00001"] {
        std::fs::copy(variables.join("variables").join(file), version.join("variables").join(file)).expect("copy");
    }
    root.join(name)
}

/// Each kind of broken SavedModel sends only its own version to END, with a message that says
/// what is wrong, while the good model keeps serving.
#[tokio::test]
async fn broken_savedmodels_fail_alone_with_precise_messages() {
    use candle_serving::proto::tensorflow::serving::model_server_config::Config;
    use candle_serving::proto::tensorflow::serving::model_version_status::State;
    use candle_serving::proto::tensorflow::serving::{GetModelStatusRequest, ModelConfig, ModelConfigList, ModelServerConfig, ReloadConfigRequest};

    let root = temp_dir("savedmodel-broken");
    let demo = fixture_dir();
    let cnn = repo_root().join("tests/fixtures/savedmodel/cnn");
    let good = savedmodel_version(&root, "good", &demo, &demo);
    let corrupt = savedmodel_version(&root, "corrupt", &demo, &demo);
    std::fs::write(corrupt.join("1/saved_model.pb"), b"\x0a\xff\xff\xff\xff not a SavedModel").expect("write");
    let truncated = savedmodel_version(&root, "truncated", &demo, &demo);
    let shard = truncated.join("1/variables/variables.data-00000-of-00001");
    let bytes = std::fs::read(&shard).expect("read");
    std::fs::write(&shard, &bytes[..bytes.len() / 3]).expect("truncate");
    let flipped = savedmodel_version(&root, "flipped", &demo, &demo);
    let shard = flipped.join("1/variables/variables.data-00000-of-00001");
    let mut bytes = std::fs::read(&shard).expect("read");
    bytes.iter_mut().take(48).for_each(|b| *b ^= 0x5a);
    std::fs::write(&shard, &bytes).expect("flip");
    let missing = savedmodel_version(&root, "missing", &demo, &cnn);
    let unsupported_dir = repo_root().join("tests/fixtures/savedmodel/unsupported");
    let unsupported = savedmodel_version(&root, "unsupported", &unsupported_dir, &unsupported_dir);

    let base_flag = format!("--model_base_path={}", good.display());
    let server = Server::start(&["--model_name=good", &base_flag], "good").await;
    let config = |models: &[(&str, &PathBuf)]| ModelServerConfig {
        config: Some(Config::ModelConfigList(ModelConfigList {
            config: models.iter().map(|(n, p)| ModelConfig { model_platform: "tensorflow".into(), ..model_config(n, p) }).collect(),
        })),
    };
    // An ONNX version under model_platform "tensorflow" is refused for what it is.
    let onnx = root.join("onnx");
    add_version(&onnx, 1);
    let broken: [(&str, &PathBuf, &[&str]); 6] = [
        ("onnx", &onnx, &["model_platform is \"tensorflow\"", "holds no saved_model.pb"]),
        ("corrupt", &corrupt, &["saved_model.pb", "does not parse"]),
        ("truncated", &truncated, &["variables.data-00000-of-00001", "outside the"]),
        ("flipped", &flipped, &["variables.data-00000-of-00001", "checksum"]),
        ("missing", &missing, &["no value in the checkpoint"]),
        ("unsupported", &unsupported, &["not translated yet: Cumprod (nodes '", "/Cumprod'); Cumsum (nodes '"]),
    ];
    let mut models = vec![("good", &good)];
    models.extend(broken.iter().map(|(n, p, _)| (*n, *p)));
    let mut client = server.model_client().await;
    let status = client
        .handle_reload_config_request(ReloadConfigRequest { config: Some(config(&models)), ..Default::default() })
        .await
        .expect_err("six models fail to load");
    assert!(status.message().contains("6 model(s) did not become available"), "{}", status.message());
    for (name, _, words) in broken {
        let versions = client.get_model_status(GetModelStatusRequest { model_spec: Some(spec(name)) }).await.expect(name).into_inner();
        let version = &versions.model_version_status[0];
        assert_eq!(version.state, State::End as i32, "{name}");
        let message = &version.status.as_ref().expect("status").error_message;
        for word in words {
            assert!(message.contains(word), "{name}: {word:?} not in {message}");
        }
    }
    // The good model still answers.
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(demo.join("captures.json")).expect("captures.json")).expect("json");
    let x: Vec<f32> = golden["golden"]["x"].as_array().expect("rows").iter().flat_map(|r| r.as_array().expect("row").iter().map(|v| v.as_f64().expect("n") as f32)).collect();
    let mut predict = server.predict_client().await;
    predict.predict(predict_request("good", "x", float_tensor(&[2, 3], x))).await.expect("the good model serves");

    // A platform TF Serving does not know is refused with the config, naming it.
    let mut unknown = config(&[("good", &good)]);
    if let Some(Config::ModelConfigList(list)) = &mut unknown.config {
        list.config[0].model_platform = "pytorch".into();
    }
    let status = client.handle_reload_config_request(ReloadConfigRequest { config: Some(unknown), ..Default::default() }).await.expect_err("pytorch");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("\"pytorch\"") && status.message().contains("good"), "{}", status.message());
    std::fs::remove_dir_all(&root).ok();
}

/// `--saved_model_tags` naming no meta graph fails each SavedModel version (END, naming the
/// tags the file has) while ONNX models keep serving.
#[tokio::test]
async fn unknown_saved_model_tags_fail_only_the_savedmodel_versions() {
    use candle_serving::proto::tensorflow::serving::model_server_config::Config;
    use candle_serving::proto::tensorflow::serving::model_version_status::State;
    use candle_serving::proto::tensorflow::serving::{GetModelStatusRequest, ModelConfig, ModelConfigList, ModelServerConfig, ReloadConfigRequest};

    let root = temp_dir("savedmodel-tags");
    let onnx = root.join("onnx");
    add_version(&onnx, 1);
    let saved = savedmodel_version(&root, "saved", &fixture_dir(), &fixture_dir());
    let base_flag = format!("--model_base_path={}", onnx.display());
    let server = Server::start(&["--model_name=onnx", &base_flag, "--saved_model_tags=serve,tpu"], "onnx").await;
    let config = ModelServerConfig {
        config: Some(Config::ModelConfigList(ModelConfigList {
            config: vec![model_config("onnx", &onnx), ModelConfig { model_platform: "tensorflow".into(), ..model_config("saved", &saved) }],
        })),
    };
    let mut client = server.model_client().await;
    let status = client.handle_reload_config_request(ReloadConfigRequest { config: Some(config), ..Default::default() }).await.expect_err("saved fails");
    assert!(status.message().contains("1 model(s) did not become available"), "{}", status.message());
    let versions = client.get_model_status(GetModelStatusRequest { model_spec: Some(spec("saved")) }).await.expect("status").into_inner();
    let version = &versions.model_version_status[0];
    assert_eq!(version.state, State::End as i32);
    let message = &version.status.as_ref().expect("status").error_message;
    assert!(message.contains("\"tpu\"") && message.contains("--saved_model_tags") && message.contains("\"serve\""), "{message}");
    let mut predict = server.predict_client().await;
    check_golden(&mut predict, "onnx", "mnist_cnn", 1, None).await;
    std::fs::remove_dir_all(&root).ok();
}

/// A TF1 model's classify and regress signatures (over serialized tf.Examples) load and are
/// listed with their methods; a Predict on one answers UNIMPLEMENTED pointing to the tf.Example
/// APIs, and the predict signature beside them serves.
#[tokio::test]
async fn classify_and_regress_signatures_are_listed_and_predict_points_to_their_apis() {
    use candle_serving::proto::tensorflow::serving::{GetModelMetadataRequest, SignatureDefMap};
    use prost::Message;

    let base = repo_root().join("tests/fixtures/savedmodel/set/tf1_graph");
    let base_flag = format!("--model_base_path={}", base.display());
    let server = Server::start(&["--model_name=tf1", &base_flag], "tf1").await;
    let mut client = server.predict_client().await;
    let metadata = client
        .get_model_metadata(GetModelMetadataRequest { model_spec: Some(spec("tf1")), metadata_field: vec!["signature_def".into()] })
        .await
        .expect("metadata")
        .into_inner();
    let map = SignatureDefMap::decode(metadata.metadata["signature_def"].value.as_slice()).expect("SignatureDefMap");
    let methods: std::collections::BTreeMap<&str, &str> = map.signature_def.iter().map(|(k, s)| (k.as_str(), s.method_name.as_str())).collect();
    assert_eq!(methods["classify_digits"], "tensorflow/serving/classify");
    assert_eq!(methods["regress_ink"], "tensorflow/serving/regress");
    assert_eq!(methods["serving_default"], "tensorflow/serving/predict");

    let mut request = predict_request("tf1", "inputs", float_tensor(&[1], vec![0.0]));
    request.model_spec.as_mut().expect("spec").signature_name = "regress_ink".into();
    let status = client.predict(request).await.expect_err("not runnable");
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    assert!(status.message().contains("\"regress_ink\" cannot be run") && status.message().contains("call Classify, Regress or MultiInference"), "{}", status.message());

    let (dims, pixels) = npy(&repo_root().join("tests/fixtures/savedmodel/goldens/tf1_graph/serving_default_input_pixels_b1.npy"));
    let response = client.predict(predict_request("tf1", "pixels", float_tensor(&dims, pixels))).await.expect("predict").into_inner();
    let (_, want) = npy(&repo_root().join("tests/fixtures/savedmodel/goldens/tf1_graph/serving_default_output_probabilities_b1.npy"));
    assert_close(&response.outputs["probabilities"].float_val, &want, 1e-5, "tf1 probabilities");
}

/// `__saved_model_init_op` is listed in metadata, as TF Serving lists it, but Predict does not
/// serve it.
#[tokio::test]
async fn the_init_op_signature_is_listed_but_not_served() {
    use candle_serving::proto::tensorflow::serving::{GetModelMetadataRequest, SignatureDefMap};
    use prost::Message;

    let base_flag = format!("--model_base_path={}", repo_root().join("models/mnist_cnn_savedmodel").display());
    let server = Server::start(&["--model_name=cnn", &base_flag], "cnn").await;
    let mut client = server.predict_client().await;
    let metadata = client
        .get_model_metadata(GetModelMetadataRequest { model_spec: Some(spec("cnn")), metadata_field: vec!["signature_def".into()] })
        .await
        .expect("metadata")
        .into_inner();
    let map = SignatureDefMap::decode(metadata.metadata["signature_def"].value.as_slice()).expect("SignatureDefMap");
    assert!(map.signature_def.contains_key("__saved_model_init_op"), "{:?}", map.signature_def.keys());
    let (dims, image) = npy(&fixture("mnist_cnn/input_b1.npy"));
    let mut request = predict_request("cnn", "image", float_tensor(&dims, image));
    request.model_spec.as_mut().expect("spec").signature_name = "__saved_model_init_op".into();
    let status = client.predict(request).await.expect_err("not a client's signature");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(status.message().contains("Serving signature key \"__saved_model_init_op\" not found"), "{}", status.message());
}
