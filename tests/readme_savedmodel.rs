//! The README's SavedModel flow, as written: train a Keras CNN and `model.export()` it, start the
//! server on it, send the official client's PredictRequest. The three blocks come from the
//! README (after its `tests/readme_savedmodel.rs` marker) and run in a scratch directory (the
//! export lands there, not in the repository's models/), with the server on a free port. The
//! printed classes are checked against the labels, and the served probabilities against what
//! TensorFlow computes from the same export.

mod common;

use std::process::Command;

use common::*;

const MARKER: &str = "<!-- tests/readme_savedmodel.rs runs these three blocks";

/// The fenced blocks after the marker, in order: (language, body).
fn readme_blocks() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let mut rest = &readme[readme.find(MARKER).expect("README: the SavedModel flow marker")..];
    let mut blocks = Vec::new();
    for _ in 0..3 {
        let (_, after) = rest.split_once("```").expect("README: a fenced block");
        let (language, after) = after.split_once('\n').expect("README: the block's language line");
        let (body, after) = after.split_once("\n```").expect("README: the end of the block");
        blocks.push((language.to_string(), body.to_string()));
        rest = after;
    }
    blocks
}

#[tokio::test]
async fn the_readme_savedmodel_flow_works_as_written() {
    let blocks = readme_blocks();
    let kinds: Vec<&str> = blocks.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(kinds, ["python", "sh", "python"], "README: export, serve, predict");
    let python = venv_python();
    let scratch = temp_dir("readme-savedmodel");
    // The client reads the repository's fixture images by their relative path.
    std::os::unix::fs::symlink(repo_root().join("tests"), scratch.join("tests")).expect("link tests/");

    let export = Command::new(&python)
        .args(["-c", &blocks[0].1])
        .current_dir(&scratch)
        // The first 4096 training images of ../shared/data/mnist_subset.npz, kept in the
        // repository so the test needs nothing beside the clone.
        .env("MNIST_NPZ", repo_root().join("tests/fixtures/mnist_train_4096.npz"))
        .env("TF_CPP_MIN_LOG_LEVEL", "2")
        .output()
        .expect("run the export block");
    assert!(export.status.success(), "export block failed:\n{}", String::from_utf8_lossy(&export.stderr));
    assert!(scratch.join("models/my_model/1/saved_model.pb").is_file(), "model.export wrote no SavedModel");

    // `cargo run --release -- ARGS`: the binary with ARGS, from the scratch directory.
    let command = blocks[1].1.lines().find(|l| l.starts_with("cargo run")).expect("README: the cargo run line").to_string();
    let args: Vec<String> = command.split_once(" -- ").expect("cargo run -- ARGS").1.split_whitespace().map(str::to_string).collect();
    let mut server = BinaryServer::spawn(
        || {
            let mut cmd = Command::new(BIN);
            cmd.args(&args).current_dir(&scratch);
            cmd
        },
        false,
    );
    server.wait_available("my_model").await;

    let client = blocks[2].1.replace("localhost:8500", &format!("127.0.0.1:{}", server.port));
    let check = format!(
        "{client}\n\
         import sys\n\
         labels = np.load('tests/fixtures/mnist_cnn/labels_b16.npy')\n\
         served = tf.make_ndarray(response.outputs['output_0'])\n\
         local = tf.saved_model.load('models/my_model/1').signatures['serving_default'](image=tf.constant(images))['output_0'].numpy()\n\
         diff = float(np.abs(served - local).max())\n\
         right = int((served.argmax(axis=1) == labels).sum())\n\
         print(f'CHECK max|served - tensorflow| {{diff:.3g}}, {{right}}/16 right')\n\
         sys.exit(0 if diff <= 1e-5 and right >= 12 else 1)\n"
    );
    let predict = Command::new(&python).args(["-c", &check]).current_dir(&scratch).env("TF_CPP_MIN_LOG_LEVEL", "2").output().expect("run the client");
    let stdout = String::from_utf8_lossy(&predict.stdout);
    println!("{stdout}");
    assert!(predict.status.success(), "client block failed:\n{stdout}\n{}\nserver log:\n{}", String::from_utf8_lossy(&predict.stderr), server.logs());
    let printed = stdout.lines().next().unwrap_or_default();
    assert!(printed.starts_with('[') && printed.split_whitespace().count() >= 16, "the block prints 16 classes: {printed}");
    std::fs::remove_dir_all(&scratch).ok();
}
