"""StateDictLoader: loads a bundle's weights strictly, or says clearly why it cannot."""

import pytest
import torch
from ignite.engine import Engine

from common.engines import StateDictLoader, read_state_dict


def tiny(width=3):
    torch.manual_seed(width)
    return torch.nn.Sequential(torch.nn.Conv2d(1, width, 3), torch.nn.ReLU(), torch.nn.Conv2d(width, 1, 1))


def run_engine_with(loader):
    engine = Engine(lambda engine, batch: None)
    loader.attach(engine)
    engine.run([0], max_epochs=1)


@pytest.mark.parametrize("wrap", [False, True], ids=["bare", "model_key"])
def test_loads_a_state_dict_when_the_engine_starts(tmp_path, wrap):
    trained, fresh = tiny(), tiny()
    fresh.load_state_dict({k: torch.randn_like(v) for k, v in trained.state_dict().items()})
    path = tmp_path / "model.pt"
    torch.save({"model": trained.state_dict()} if wrap else trained.state_dict(), path)
    run_engine_with(StateDictLoader(path, fresh))
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value, rtol=0, atol=0)


def test_unwraps_data_parallel(tmp_path):
    trained, fresh = tiny(), torch.nn.DataParallel(tiny(3))
    fresh.module[0].weight.data.zero_()
    torch.save(trained.state_dict(), tmp_path / "model.pt")
    StateDictLoader(tmp_path / "model.pt", fresh).load()
    torch.testing.assert_close(fresh.module[0].weight, trained[0].weight)


def test_missing_file_names_the_path_and_how_to_get_weights(tmp_path):
    path = tmp_path / "models" / "model.pt"
    with pytest.raises(FileNotFoundError, match="models/model.pt") as error:
        StateDictLoader(path, tiny()).load()
    assert "training" in str(error.value) and "demo weights" in str(error.value)
    assert "--allow_random_weights true" in str(error.value)
    with pytest.raises(SystemExit) as stop:  # the engine handler ends the CLI run with one line naming the path
        run_engine_with(StateDictLoader(path, tiny()))
    assert str(stop.value) == " ".join(str(error.value).split()) and "\n" not in str(stop.value)


def test_missing_file_with_random_weights_allowed_keeps_the_network(tmp_path, caplog):
    network = tiny()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    loader = StateDictLoader(tmp_path / "model.pt", network, allow_random_weights=True)
    with caplog.at_level("WARNING"):
        assert loader.load() is False
    assert "RANDOM weights" in caplog.text
    for key, value in network.state_dict().items():
        assert torch.equal(value, before[key])


def test_a_different_width_points_to_the_paper_width_override(tmp_path):
    torch.save(tiny(width=8).state_dict(), tmp_path / "model.pt")
    network = tiny(width=3)
    before = network[0].weight.clone()
    with pytest.raises(ValueError, match="different architecture") as error:
        StateDictLoader(tmp_path / "model.pt", network, allow_random_weights=True).load()
    message = str(error.value)
    assert "configs/inference_paper_width.json" in message
    assert "0.weight: checkpoint (8, 1, 3, 3) vs network (3, 1, 3, 3)" in message
    assert torch.equal(network[0].weight, before)


def test_missing_and_unexpected_keys_are_an_architecture_error(tmp_path):
    state = tiny().state_dict()
    state["extra.weight"] = state.pop("2.bias")
    torch.save(state, tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"1 missing, e\.g\. 2\.bias.*1 unexpected, e\.g\. extra\.weight"):
        StateDictLoader(tmp_path / "model.pt", tiny()).load()


def test_refuses_pickled_objects_and_non_state_dicts(tmp_path):
    torch.save(tiny(), tmp_path / "whole_module.pt")
    with pytest.raises(ValueError, match="weights_only=True"):
        read_state_dict(tmp_path / "whole_module.pt")
    torch.save({"weights": [1.0, 2.0], "note": "x"}, tmp_path / "not_weights.pt")
    with pytest.raises(ValueError, match="not a state dict"):
        read_state_dict(tmp_path / "not_weights.pt")


def test_takes_the_model_of_a_training_checkpoint(tmp_path):
    network = tiny()
    optimizer = torch.optim.Adam(network.parameters())
    torch.save({"model": network.state_dict(), "optimizer": optimizer.state_dict()}, tmp_path / "checkpoint.pt")
    state = read_state_dict(tmp_path / "checkpoint.pt")
    assert state.keys() == network.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in network.state_dict().items())
