"""Tune's param_space: the recipe form, its checks, and the Ray Tune space it becomes."""

import pytest

from rayctl.workloads import tune as T


def errors(space):
    return [(path, msg) for path, msg, _ in T.param_errors(space)]


def test_every_sampler_and_constants_are_accepted():
    space = {"lr": {"loguniform": [1e-4, 1e-1]}, "dropout": {"uniform": [0.0, 0.3]},
             "hidden": {"choice": [32, 64]}, "batch_size": {"grid": [32, 64, 128]}, "layers": {"randint": [1, 4]},
             "weight_decay": 0.0001}
    assert errors(space) == []
    assert T.grid_size(space) == 3
    assert T.total_trials(space, 4) == 12


def test_to_tune_builds_ray_tune_domains():
    from ray.tune.search.sample import Categorical, Float, Integer

    space = T.to_tune({"lr": {"loguniform": [1e-4, 1e-1]}, "dropout": {"uniform": [0.0, 0.3]},
                       "hidden": {"choice": [32, 64]}, "batch_size": {"grid": [32, 64]},
                       "layers": {"randint": [1, 4]}, "weight_decay": 0.01})
    assert isinstance(space["lr"], Float) and space["lr"].lower == 1e-4 and space["lr"].upper == 0.1
    assert "LogUniform" in type(space["lr"].get_sampler()).__name__
    assert isinstance(space["dropout"], Float) and type(space["dropout"].get_sampler()).__name__.lstrip("_") == "Uniform"
    assert isinstance(space["hidden"], Categorical) and space["hidden"].categories == [32, 64]
    assert space["batch_size"] == {"grid_search": [32, 64]}
    assert isinstance(space["layers"], Integer) and (space["layers"].lower, space["layers"].upper) == (1, 4)
    assert space["weight_decay"] == 0.01


@pytest.mark.parametrize("space, path, fragment", [
    ({"lr": {"loguniform": [0, 0.1]}}, ("lr", "loguniform"), "low > 0"),
    ({"lr": {"loguniform": [0.1, 0.01]}}, ("lr", "loguniform"), "low must be below high"),
    ({"lr": {"loguniorm": [0.001, 0.1]}}, ("lr", "loguniorm"), "did you mean 'loguniform'"),
    ({"hiden": {"choice": [32, 64]}}, ("hiden",), "did you mean 'hidden'"),
    ({"lr": [0.1, 0.01]}, ("lr",), "bare list is ambiguous"),
    ({"hidden": {"uniform": [16, 64]}}, ("hidden", "uniform"), "whole number"),
    ({"lr": {"randint": [1, 3]}}, ("lr", "randint"), "real number"),
    ({"hidden": {"choice": []}}, ("hidden", "choice"), "non-empty list"),
    ({"hidden": {"choice": [32, "wide"]}}, ("hidden", "choice", 1), "whole numbers"),
    ({"dropout": {"grid": [0.1, 1.5]}}, ("dropout", "grid", 1), "must be < 1.0"),
    ({"lr": {"uniform": [0.1]}}, ("lr", "uniform"), "[low, high]"),
    ({"lr": {"uniform": [0.0, 0.1], "choice": [1]}}, ("lr",), "one sampler"),
    ({"lr": "fast"}, ("lr",), "takes numbers"),
    ({}, (), "empty"),
])
def test_bad_spaces_name_the_place_and_the_fix(space, path, fragment):
    errs = errors(space)
    assert errs, space
    assert errs[0][0] == path
    assert fragment in errs[0][1], errs


def test_every_problem_is_reported_not_just_the_first():
    errs = errors({"lr": {"loguniform": [0, 1]}, "hiden": 3, "layers": {"uniform": [1, 2]}})
    assert {p[0] for p, _ in errs} == {"lr", "hiden", "layers"}
