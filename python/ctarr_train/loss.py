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
    all_labelled = bool(lab.all())
    view = (n, c) + (1,) * (logits.dim() - 2)
    if all_labelled:
        ce = torch.nn.functional.cross_entropy(logits, target)
    else:
        bg_group = ~lab
        bg_group[:, 0] = True
        lse_all = torch.logsumexp(logits, dim=1, keepdim=True)
        neg = torch.finfo(logits.dtype).min
        lse_bg = torch.logsumexp(logits.masked_fill(~bg_group.view(view), neg), dim=1, keepdim=True)
        logq = torch.cat([lse_bg - lse_all, (logits - lse_all)[:, 1:]], dim=1)
        ce = torch.nn.functional.nll_loss(logq, target)

    p = torch.softmax(logits, dim=1)
    if all_labelled:
        q = p  # every class labelled in every sample (phantoms, TotalSegmentator subjects): nothing to merge
    else:
        unl = (~lab).float().view(view).clone()
        unl[:, 0] = 0
        q = p * (1 - unl)
        q = torch.cat([q[:, :1] + (p * unl).sum(1, keepdim=True), q[:, 1:]], dim=1)
    # Dice terms without a one-hot tensor: the intersection is q at the target class, summed per (sample, class)
    dims = tuple(range(2, logits.dim()))
    flat_t = target.reshape(n, -1)
    q_at_t = q.reshape(n, c, -1).gather(1, flat_t[:, None]).squeeze(1)            # [N, V]
    inter_nc = torch.zeros((n, c), dtype=q.dtype, device=q.device).scatter_add_(1, flat_t, q_at_t)
    gsum_nc = torch.zeros((n, c), dtype=q.dtype, device=q.device).scatter_add_(
        1, flat_t, torch.ones_like(q_at_t))
    w = lab.float()
    inter = (inter_nc * w).sum(0)
    psum = (q.sum(dims) * w).sum(0)
    gsum = (gsum_nc * w).sum(0)
    present = gsum[1:] > 0
    if present.any():
        dice = (2 * inter[1:] + eps) / (psum[1:] + gsum[1:] + eps)
        dice_loss = 1 - dice[present].mean()
    else:
        dice_loss = logits.sum() * 0
    return ce + dice_loss, ce.detach(), dice_loss.detach()


def partial_label_loss_reference(logits, target, labelled, eps=1e-5):
    """The same loss written with a one-hot target (slower; the tests hold partial_label_loss to it)."""
    logits = logits if logits.dtype == torch.float64 else logits.float()
    n, c = logits.shape[:2]
    lab = labelled.to(logits.device).bool()
    bg_group = ~lab
    bg_group[:, 0] = True
    view = (n, c) + (1,) * (logits.dim() - 2)
    lse_all = torch.logsumexp(logits, dim=1, keepdim=True)
    lse_bg = torch.logsumexp(logits.masked_fill(~bg_group.view(view), torch.finfo(logits.dtype).min), 1, keepdim=True)
    logq = torch.cat([lse_bg - lse_all, (logits - lse_all)[:, 1:]], dim=1)
    ce = torch.nn.functional.nll_loss(logq, target)
    p = torch.softmax(logits, dim=1)
    unl = (~lab).float().view(view).clone()
    unl[:, 0] = 0
    q = p * (1 - unl)
    q = torch.cat([q[:, :1] + (p * unl).sum(1, keepdim=True), q[:, 1:]], dim=1)
    onehot = torch.nn.functional.one_hot(target, c).movedim(-1, 1).to(q.dtype)
    dims = tuple(range(2, logits.dim()))
    w = lab.float()
    inter = ((q * onehot).sum(dims) * w).sum(0)
    psum = (q.sum(dims) * w).sum(0)
    gsum = (onehot.sum(dims) * w).sum(0)
    present = gsum[1:] > 0
    if not present.any():
        return ce, ce.detach(), (logits.sum() * 0).detach()
    dice = (2 * inter[1:] + eps) / (psum[1:] + gsum[1:] + eps)
    return ce + 1 - dice[present].mean(), ce.detach(), (1 - dice[present].mean()).detach()
