"""The tutorial's whole script, as a user runs it: `python -m bench.tutorial_script ROOT [--target 0.99]`.

torchvision's MNIST under ROOT (extracted files, as torchvision wants them), a DataLoader of batch 64
(shuffled, no workers) with ToTensor + Normalize, the tutorial's CNN written as the tutorial writes it, Adam
1e-3, and the test set scored after every epoch through a DataLoader of batch 1000. It prints one JSON line
per epoch and exits at the first epoch whose test accuracy reaches `--target` (or after `--max-epochs`), so
the wall time of the process, from `python` to that line, is the tutorial's time to the target. It imports
nothing from this project, whose imports would count against it.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = self.dropout(F.relu(self.fc1(torch.flatten(x, 1))))
        return self.fc2(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", help="a folder holding MNIST/raw/ with the extracted files")
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--max-epochs", type=int, default=5)
    parser.add_argument("--train-limit", type=int, help="the first N training images (smoke runs)")
    parser.add_argument("--test-limit", type=int, help="the first N test images (smoke runs)")
    args = parser.parse_args()
    torch.manual_seed(0)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_set = datasets.MNIST(args.root, train=True, download=False, transform=transform)
    test_set = datasets.MNIST(args.root, train=False, download=False, transform=transform)
    if args.train_limit:
        train_set = Subset(train_set, range(min(args.train_limit, len(train_set))))
    if args.test_limit:
        test_set = Subset(test_set, range(min(args.test_limit, len(test_set))))
    train_loader = DataLoader(train_set, batch_size=64, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=1000)
    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    started = time.perf_counter()
    for epoch in range(1, args.max_epochs + 1):
        model.train()
        for images, labels in train_loader:
            optimizer.zero_grad()
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in test_loader:
                correct += int((model(images).argmax(1) == labels).sum())
        accuracy = correct / len(test_set)
        line = {"epoch": epoch, "accuracy": accuracy, "seconds_in_loop": round(time.perf_counter() - started, 2)}
        print(json.dumps(line), flush=True)
        if accuracy >= args.target:
            break


if __name__ == "__main__":
    main()
