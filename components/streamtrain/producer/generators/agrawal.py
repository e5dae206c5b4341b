"""Agrawal et al.'s loan-applicant stream: nine attributes and ten classification functions.

R. Agrawal, T. Imielinski and A. Swami, "Database Mining: A Performance Perspective", IEEE Transactions on
Knowledge and Data Engineering 5(6), 914-925, 1993: the attributes of its table 2 and the functions of p. 924
(its functions 1-10 are 0-9 here).

Columns, in this order: salary (uniform 20,000-150,000); commission (0 when the salary is 75,000 or more,
else uniform 10,000-75,000); age (integer 20-80); elevel, the education level (code 0-4); car, the make
(code 1-20); zipcode (code 0-8); hvalue, the house value (uniform 0.5 k to 1.5 k times 100,000, where
k = 9 - zipcode); hyears, years the house is owned (1-30); loan (uniform 0-500,000). The three codes are
categories, not magnitudes (`CATEGORICAL`, in the trainer's --categorical-columns spelling).

Label 1 is the paper's *group A*, for every function. Functions 6-9 compare a disposable income with 0:
2/3 (salary + commission) - loan / 5 - 20,000 (6); 2/3 (salary + commission) - 5,000 elevel - 20,000 (7);
2/3 (salary + commission) - 5,000 elevel - loan / 5 - 10,000 (8); and 2/3 (salary + commission) -
5,000 elevel + equity / 5 - 10,000 (9), where equity = hvalue (hyears - 20) / 10 once hyears reaches 20.

The optional perturbation is feature noise added after labelling, as in the paper: each numeric attribute
(salary, a non-zero commission, age, hvalue, hyears, loan) moves by a uniform amount of up to
`perturbation` times its range and is clipped to the range (age and hyears stay whole).

>>> import numpy as np
>>> applicant = np.array([[60_000, 20_000, 45, 1, 5, 2, 600_000, 5, 150_000]])  # 45 years old, loan 150,000
>>> [int(label(applicant, f)[0]) for f in range(10)]
[0, 0, 1, 1, 0, 1, 1, 1, 1, 1]
>>> x, y = arrays(np.random.default_rng(0), 0, 1000, functions=[0], points=[], kind="abrupt", width=1)
>>> x.shape, sorted(set(x[:, 3].tolist())), sorted(set(x[:, 5].tolist())) == list(range(9))
((1000, 9), [0.0, 1.0, 2.0, 3.0, 4.0], True)
>>> bool((y == ((x[:, 2] < 40) | (x[:, 2] >= 60))).all())
True
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from streamtrain.producer.generators import concepts, flip

FEATURES = ("salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan")
FUNCTIONS = 10
CATEGORICAL = "3:5,4:21,5:9"  # elevel 0-4, car 1-20 (so 21 codes), zipcode 0-8
BLOCK = 4096


def attributes(rng: np.random.Generator, n: int) -> np.ndarray:
    """n applicants drawn as the paper describes, one row each (float64, FEATURES' order)."""
    salary = 20_000 + 130_000 * rng.random(n)
    commission = np.where(salary >= 75_000, 0.0, 10_000 + 65_000 * rng.random(n))
    age = rng.integers(20, 81, n)
    elevel = rng.integers(0, 5, n)
    car = rng.integers(1, 21, n)
    zipcode = rng.integers(0, 9, n)
    hvalue = (9 - zipcode) * 100_000 * (0.5 + rng.random(n))
    hyears = rng.integers(1, 31, n)
    loan = 500_000 * rng.random(n)
    return np.stack([salary, commission, age, elevel, car, zipcode, hvalue, hyears, loan], axis=1).astype(np.float64)


def _between(value: np.ndarray, low: float, high: float) -> np.ndarray:
    return (low <= value) & (value <= high)


def _by_age(age: np.ndarray, young: np.ndarray, middle: np.ndarray, old: np.ndarray) -> np.ndarray:
    """The paper's three age bands: under 40, 40 to under 60, 60 and over."""
    return np.where(age < 40, young, np.where(age < 60, middle, old))


def label(x: np.ndarray, function: int) -> np.ndarray:
    """Labels (float32, 1 = group A) of the rows of x (FEATURES' columns) under function 0-9."""
    salary, commission, age, elevel, _car, _zipcode, hvalue, hyears, loan = x.T
    if function == 0:
        group_a = (age < 40) | (age >= 60)
    elif function in (1, 5):
        pay = salary if function == 1 else salary + commission
        group_a = _by_age(age, _between(pay, 50_000, 100_000), _between(pay, 75_000, 125_000),
                          _between(pay, 25_000, 75_000))
    elif function == 2:
        group_a = _by_age(age, elevel <= 1, _between(elevel, 1, 3), elevel >= 2)
    elif function == 3:
        group_a = _by_age(
            age,
            np.where(elevel <= 1, _between(salary, 25_000, 75_000), _between(salary, 50_000, 100_000)),
            np.where(_between(elevel, 1, 3), _between(salary, 50_000, 100_000),
                     _between(salary, 75_000, 125_000)),
            np.where(elevel >= 2, _between(salary, 50_000, 100_000), _between(salary, 25_000, 75_000)))
    elif function == 4:
        group_a = _by_age(
            age,
            np.where(_between(salary, 50_000, 100_000), _between(loan, 100_000, 300_000),
                     _between(loan, 200_000, 400_000)),
            np.where(_between(salary, 75_000, 125_000), _between(loan, 200_000, 400_000),
                     _between(loan, 300_000, 500_000)),
            np.where(_between(salary, 25_000, 75_000), _between(loan, 300_000, 500_000),
                     _between(loan, 100_000, 300_000)))
    elif 6 <= function <= 9:
        income = 2 * (salary + commission) / 3
        if function == 6:
            disposable = income - loan / 5 - 20_000
        elif function == 7:
            disposable = income - 5_000 * elevel - 20_000
        elif function == 8:
            disposable = income - 5_000 * elevel - loan / 5 - 10_000
        else:
            equity = np.where(hyears >= 20, hvalue * (hyears - 20) / 10, 0.0)
            disposable = income - 5_000 * elevel + equity / 5 - 10_000
        group_a = disposable > 0
    else:
        raise ValueError(f"Agrawal functions are 0-9, got {function}")
    return np.asarray(group_a, np.float32)


def perturb(rng: np.random.Generator, x: np.ndarray, perturbation: float) -> np.ndarray:
    """x with each numeric attribute moved by up to `perturbation` times its range, clipped to the range."""
    out = x.copy()
    zipcode = x[:, 5]
    low_hvalue, high_hvalue = (9 - zipcode) * 50_000, (9 - zipcode) * 150_000
    # (column, lowest, highest, whole numbers): commission moves only where there is one.
    for column, low, high, whole in ((0, 20_000, 150_000, False), (1, 10_000, 75_000, False), (2, 20, 80, True),
                                     (6, low_hvalue, high_hvalue, False), (7, 1, 30, True), (8, 0, 500_000, False)):
        moved = x[:, column] + (high - low) * perturbation * (2 * rng.random(len(x)) - 1)
        moved = np.clip(np.round(moved) if whole else moved, low, high)
        out[:, column] = np.where(x[:, 1] > 0, moved, 0.0) if column == 1 else moved
    return out


def arrays(rng: np.random.Generator, start: int, n: int, functions: list[int], points: list[int], kind: str,
           width: int, perturbation: float = 0.0, noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Records start .. start + n - 1: features (float64) and labels (float32); concept k uses functions[k]."""
    x = attributes(rng, n)
    concept = concepts(rng, start, n, points, kind, width)
    y = np.zeros(n, np.float32)
    for k, function in enumerate(functions):
        mine = concept == k
        if mine.any():
            y[mine] = label(x[mine], function)
    if perturbation > 0:
        x = perturb(rng, x, perturbation)
    return x, flip(rng, y, noise)


def stream(seed: int, functions: list[int], points: list[int], kind: str = "abrupt", width: int = 2000,
           perturbation: float = 0.0, noise: float = 0.0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless blocks of BLOCK records, seeded: concept k (from the k-th drift point on) uses functions[k]."""
    if len(functions) != len(points) + 1:
        raise ValueError(f"one function per concept: {len(points)} drift points need {len(points) + 1}")
    rng = np.random.default_rng(seed)
    for start in range(0, 2**62, BLOCK):
        yield arrays(rng, start, BLOCK, functions, points, kind, width, perturbation, noise)
