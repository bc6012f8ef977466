package stripeemu

import "net/http"

// POST /v1/refunds
func (e *Emulator) createRefund(c apiCall) response {
	p := c.params
	if err := p.checkKnown("payment_intent", "charge", "amount", "reason", "metadata[*]"); err != nil {
		return refuse(err)
	}
	amount, given, err := p.integer("amount")
	if err != nil {
		return refuse(err)
	}
	if given && amount < 1 {
		return refuse(invalid("parameter_invalid_integer", "amount", "This value must be greater than or equal to 1."))
	}
	reason, err := p.oneOf("reason", "duplicate", "fraudulent", "requested_by_customer")
	if err != nil {
		return refuse(err)
	}
	metadata, err := p.metadata()
	if err != nil {
		return refuse(err)
	}
	ch, err := e.refundableCharge(p.str("payment_intent"), p.str("charge"))
	if err != nil {
		return refuse(err)
	}
	left := ch.refundable()
	if left == 0 {
		return refuse(invalid("charge_already_refunded", "", "Charge %s has already been refunded.", ch.id))
	}
	if !given {
		amount = left
	}
	if amount > left {
		return refuse(invalid("amount_too_large", "amount", "Refund amount (%s) is greater than unrefunded amount on charge (%s)",
			formatAmount(amount, ch.currency), formatAmount(left, ch.currency)))
	}
	ch.refunded += amount
	r := &refund{id: "re_" + randomID(24), created: e.now().Unix(), charge: ch, amount: amount,
		currency: ch.currency, reason: reason, metadata: metadata, status: statusSucceeded}
	e.refunds[r.id] = r
	e.refundOrder = append(e.refundOrder, r)
	return ok(r.render())
}

// refundableCharge finds the captured charge a refund names by intent or by charge.
func (e *Emulator) refundableCharge(intentID, chargeID string) (*charge, error) {
	switch {
	case intentID == "" && chargeID == "":
		return nil, invalid("parameter_missing", "", "One of the following params should be provided for this request: payment_intent or charge.")
	case intentID != "" && chargeID != "":
		return nil, invalid("", "", "You may only specify one of these parameters: charge, payment_intent.")
	case intentID != "":
		pi, found := e.intents[intentID]
		if !found {
			return nil, noSuch(http.StatusBadRequest, "payment_intent", "payment_intent", intentID)
		}
		if pi.status != statusSucceeded || pi.latestCharge == nil {
			return nil, invalid("", "payment_intent", "This PaymentIntent (%s) does not have a successful charge to refund.", intentID)
		}
		return pi.latestCharge, nil
	default:
		ch, found := e.charges[chargeID]
		if !found {
			return nil, noSuch(http.StatusBadRequest, "charge", "charge", chargeID)
		}
		if ch.captured == 0 {
			return nil, invalid("", "charge", "Charge %s has not been captured, so there is nothing to refund.", chargeID)
		}
		return ch, nil
	}
}

// GET /v1/refunds/{id}
func (e *Emulator) getRefund(c apiCall) response {
	if err := c.params.checkKnown(); err != nil {
		return refuse(err)
	}
	r, found := e.refunds[c.id]
	if !found {
		return refuse(noSuch(http.StatusNotFound, "refund", "refund", c.id))
	}
	return ok(r.render())
}

// GET /v1/refunds
func (e *Emulator) listRefunds(c apiCall) response {
	p := c.params
	if err := p.checkKnown("limit", "starting_after", "ending_before", "payment_intent", "charge"); err != nil {
		return refuse(err)
	}
	intentID, chargeID := p.str("payment_intent"), p.str("charge")
	if _, found := e.intents[intentID]; intentID != "" && !found {
		return refuse(noSuch(http.StatusBadRequest, "payment_intent", "payment_intent", intentID))
	}
	var matching []*refund
	for _, r := range newestFirst(e.refundOrder) {
		if (intentID == "" || r.charge.intent.id == intentID) && (chargeID == "" || r.charge.id == chargeID) {
			matching = append(matching, r)
		}
	}
	items, hasMore, err := page(p, matching, func(r *refund) string { return r.id }, "refund")
	if err != nil {
		return refuse(err)
	}
	list := listJSON{Object: "list", Data: []any{}, HasMore: hasMore, URL: "/v1/refunds"}
	for _, r := range items {
		list.Data = append(list.Data, r.render())
	}
	return ok(list)
}
