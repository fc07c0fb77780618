"""One answer in every process of a distributed run, for checks that stop it.

A check that raises in one process only stops that process: the others wait in their next collective (NCCL until
its timeout, 30 minutes by default), and the run's log file, which only process 0 writes, never says why the run
ended. Checks that agree first raise in every process at the same point, with the same message.
"""
from typing import Any, List, Optional

import torch
from mmengine.dist import all_gather_object, all_reduce, get_world_size


def gather_if_any(flag: bool, obj: Any) -> Optional[List[Any]]:
    """Every process's ``obj`` (indexed by rank) when ``flag`` is true in any process, else None; the same answer
    in every process. Every process must call it at the same point of the run.

    Costs one all-reduce of one number; the objects are gathered (pickled) only when some process set ``flag``.
    Outside distributed training: ``[obj]`` or None, without communication.
    """
    if get_world_size() == 1:
        return [obj] if flag else None
    any_flag = torch.tensor([int(bool(flag))])
    all_reduce(any_flag, op='max')  # moved to the backend's device and back by mmengine (NCCL: the GPU)
    return all_gather_object(obj) if any_flag.item() else None
