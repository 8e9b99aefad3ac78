"""Example architectures. Every model here has the same calling convention,
``forward(input_ids, attention_mask) -> logits`` with int64 ``[batch, tokens]``
inputs, which is also what the TorchScript / torch.export handler expects from a
user's own module. One convention means one handler for all of them."""
