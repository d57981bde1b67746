"""TSDNet: besides the restored image (checked by test_conformance), the official forward returns
the attention map and both branch outputs; they match the vector's extra outputs."""
from __future__ import annotations

import torch

import algorithms


def test_branch_outputs_match_vector(conformance):
    spec, io = conformance.load_variant("tsdnet")
    net = algorithms.build_network("tsdnet")
    net.load_state_dict(conformance.conformance_state_dict(spec), strict=True)
    with torch.no_grad():
        outputs = net.eval().forward_branches(io["input"])
    # official order (A_map, out1, out2, out) = io output_0, output_1, output_2, output
    for got, key in zip(outputs, ["output_0", "output_1", "output_2", "output"]):
        atol = spec.get("atol_extra_outputs", {}).get(key, spec["atol"])
        torch.testing.assert_close(got, io[key], atol=atol, rtol=spec.get("rtol", 1e-4), msg=key)
