"""The marginal (partial-label) loss: cross-entropy + soft Dice over the classes each sample labels."""

import torch


def partial_label_loss(logits, target, labelled, eps=1e-5):
    """logits [N, C, ...], target [N, ...] (0 = background, never a class the sample does not label), labelled
    [N, C] bool (column 0 true). Per sample, the probabilities of the classes it does not label are merged into
    background (Shi et al. 2021; Fang & Yan 2020): CE = -log q[target] with q_bg = p_bg + sum p_unlabelled; soft
    Dice per class over the samples that label it (batch Dice), averaged over the classes present in the batch's
    targets. Returns (loss, ce, dice_loss), the last two detached."""
    logits = logits if logits.dtype == torch.float64 else logits.float()
    n, c = logits.shape[:2]
    lab = labelled.to(logits.device).bool()
    bg_group = ~lab
    bg_group[:, 0] = True
    view = (n, c) + (1,) * (logits.dim() - 2)
    lse_all = torch.logsumexp(logits, dim=1, keepdim=True)
    neg = torch.finfo(logits.dtype).min
    lse_bg = torch.logsumexp(logits.masked_fill(~bg_group.view(view), neg), dim=1, keepdim=True)
    logq = torch.cat([lse_bg - lse_all, (logits - lse_all)[:, 1:]], dim=1)
    ce = torch.nn.functional.nll_loss(logq, target)

    p = torch.softmax(logits, dim=1)
    unl = (~lab).float().view(view).clone()
    unl[:, 0] = 0
    q = p * (1 - unl)
    q = torch.cat([q[:, :1] + (p * unl).sum(1, keepdim=True), q[:, 1:]], dim=1)
    onehot = torch.nn.functional.one_hot(target, c).movedim(-1, 1).float()
    dims = tuple(range(2, logits.dim()))
    w = lab.float()
    inter = ((q * onehot).sum(dims) * w).sum(0)
    psum = (q.sum(dims) * w).sum(0)
    gsum = (onehot.sum(dims) * w).sum(0)
    present = gsum[1:] > 0
    if present.any():
        dice = (2 * inter[1:] + eps) / (psum[1:] + gsum[1:] + eps)
        dice_loss = 1 - dice[present].mean()
    else:
        dice_loss = logits.sum() * 0
    return ce + dice_loss, ce.detach(), dice_loss.detach()
