"""The MNIST CNN and its training recipe, shared by the ONNX export (train_mnist_cnn.py) and
the SavedModel export (make_savedmodels.py) so both ship the same weights: training is
deterministic on CPU, so the two scripts produce identical models under the same TF pins."""
import tensorflow as tf

from common import load_mnist

EPOCHS = 5
INPUT_NAME, OUTPUT_NAME = "image", "probabilities"


def build_model():
    return tf.keras.Sequential([
        tf.keras.Input(shape=(28, 28, 1), name=INPUT_NAME),
        tf.keras.layers.Conv2D(32, (3, 3), activation="relu"),
        tf.keras.layers.MaxPooling2D(2),
        tf.keras.layers.Conv2D(64, (3, 3), activation="relu"),
        tf.keras.layers.MaxPooling2D(2),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(10, activation="softmax", name=OUTPUT_NAME),
    ])


def train():
    """The trained model and the test split it is checked on."""
    tf.keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    x_train, y_train, x_test, y_test = load_mnist()
    model = build_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=128, epochs=EPOCHS, validation_split=0.1, verbose=2)
    return model, x_test, y_test
