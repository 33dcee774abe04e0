import Sharding
import Testing

@Test func replacesTopLevelKeysAndKeepsTheRest() {
    let text = "num_layers: 4\ntensor_model_parallel_size: 1\n# comment\nprecision: bf16\n"
    let out = ConfigText.set("tensor_model_parallel_size", to: "8", in: text)
    #expect(out == "num_layers: 4\ntensor_model_parallel_size: 8\n# comment\nprecision: bf16\n")
}

@Test func addsMissingKeysUnderModel() {
    let text = "model:\n  num_layers: 4\ntrainer:\n  devices: 8\n"
    let out = ConfigText.set("pipeline_model_parallel_size", to: "2", in: text)
    #expect(out == "model:\n  pipeline_model_parallel_size: 2\n  num_layers: 4\ntrainer:\n  devices: 8\n")
}

@Test func doesNotTouchNestedKeysOfTheSameName() {
    let text = "tensor_model_parallel_size: 1\nsub:\n  tensor_model_parallel_size: 4\n"
    #expect(ConfigText.set("tensor_model_parallel_size", to: "2", in: text)
            == "tensor_model_parallel_size: 2\nsub:\n  tensor_model_parallel_size: 4\n")
}
